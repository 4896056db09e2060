"""The remote backend: any OpenAI-compatible upstream (vLLM, Ollama, llama.cpp, hosted APIs).

The ``httpx.AsyncClient`` is injected (the manager owns one for all upstreams; tests pass
their own). Connection errors and 5xx answers are retried with exponential backoff, but
only before the first byte of the answer has reached our client: after that a retry
would repeat text the client already has. Whatever the upstream gets wrong becomes a
gateway error with a message saying what happened; the upstream's API key never
appears in one.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any, TypeVar

import httpx
import msgspec

from llmserver.adapters.inference.generation import collect
from llmserver.domain.errors import (
    GatewayError,
    GenerationTimeout,
    InvalidRequest,
    Overloaded,
    UpstreamError,
)
from llmserver.domain.inference import (
    BackendStatus,
    Completion,
    FinishReason,
    GenerationParams,
    Prompt,
    StreamEnd,
    StreamEvent,
    TextDelta,
)
from llmserver.domain.ports import InferenceBackend
from llmserver.domain.registry import ModelSpec

MESSAGE_OVERHEAD_TOKENS = 8
"""Upper bound on what a chat template adds per message (role headers, separators)."""

# -- what we read of an upstream's answer ---------------------------------------------
# Fields we do not read are skipped unchecked; a field we read that has the wrong type, a
# count out of range or text that is not Unicode makes the whole answer malformed.

_Tokens = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
"""A token count: request_logs keeps them as 32-bit INTEGERs."""


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None  # chat
    text: str | None = None  # completions
    finish_reason: str | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: _Tokens | None = None
    completion_tokens: _Tokens | None = None


class _ErrorDetail(msgspec.Struct):
    message: str | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    error: _ErrorDetail | str | None = None


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail | str | None = None


_CHUNK = msgspec.json.Decoder(_Chunk)
_ERROR_BODY = msgspec.json.Decoder(_ErrorBody)
_T = TypeVar("_T")


class HttpBackend(InferenceBackend):
    def __init__(
        self,
        spec: ModelSpec,
        *,
        client: httpx.AsyncClient,
        read_timeout_s: float = 300.0,
        connect_timeout_s: float = 5.0,
        max_retries: int = 2,
        backoff_s: float = 0.25,
    ) -> None:
        self._spec = spec
        self._client = client
        base = spec.source.rstrip("/")
        self._base = base if base.endswith("/v1") else f"{base}/v1"
        self._upstream_model = spec.upstream_model or spec.id
        self._headers = {"Accept": "application/json"}
        if spec.api_key_env:
            key = os.environ.get(spec.api_key_env)
            if not key:
                raise RuntimeError(
                    f"model {spec.id!r} reads its upstream API key from the environment "
                    f"variable {spec.api_key_env}, which is not set"
                )
            self._headers["Authorization"] = f"Bearer {key}"
        self._timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
        self._max_retries = max_retries
        self._backoff_s = backoff_s
        self._in_flight = 0

    @property
    def model_id(self) -> str:
        return self._spec.id

    async def count_tokens(self, prompt: Prompt) -> int:
        # No tokenizer here: one token never covers less than one UTF-8 byte of a
        # byte-level vocabulary, so bytes plus template overhead bound the count.
        if prompt.messages is None:
            return len((prompt.text or "").encode())
        return MESSAGE_OVERHEAD_TOKENS + sum(
            len(m.content.encode()) + len(m.role.encode()) + MESSAGE_OVERHEAD_TOKENS
            for m in prompt.messages
        )

    def min_prompt_tokens(self, prompt: Prompt) -> int:
        # The count above is already cheap (one pass over the bytes, ~0.1 ms a megabyte).
        return 0

    async def generate(self, prompt: Prompt, params: GenerationParams) -> Completion:
        return await collect(self.stream(prompt, params))

    async def stream(self, prompt: Prompt, params: GenerationParams) -> AsyncIterator[StreamEvent]:
        path, body = self._body(prompt, params)
        self._in_flight += 1
        try:
            response = await self._send_with_retries(self._base + path, body)
            try:
                await self._expect_event_stream(response)
                async for event in self._events(response, prompt):
                    yield event
            finally:
                await response.aclose()
        finally:
            self._in_flight -= 1

    def status(self) -> BackendStatus:
        return BackendStatus(
            model_id=self._spec.id,
            ready=True,
            queue_depth=0,
            details={
                "backend": "http",
                "upstream": self._base,
                "in_flight": str(self._in_flight),
            },
        )

    async def close(self) -> None:
        """Nothing to release: the client belongs to whoever injected it."""

    # -- request ----------------------------------------------------------------------

    def _body(self, prompt: Prompt, params: GenerationParams) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {
            "model": self._upstream_model,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if prompt.messages is not None:
            body["messages"] = [{"role": m.role, "content": m.content} for m in prompt.messages]
            return "/chat/completions", body
        body["prompt"] = prompt.text
        return "/completions", body

    async def _send_with_retries(self, url: str, body: Mapping[str, Any]) -> httpx.Response:
        attempts = self._max_retries + 1
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                await asyncio.sleep(self._backoff_s * 2 ** (attempt - 2))
            request = self._client.build_request(
                "POST", url, json=body, headers=self._headers, timeout=self._timeout
            )
            try:
                response = await self._client.send(request, stream=True)
            except httpx.TransportError as exc:
                # A read timeout means the upstream got the request and is slow: retrying
                # would only pile more work on it.
                if isinstance(exc, httpx.TimeoutException) and not isinstance(
                    exc, httpx.ConnectTimeout
                ):
                    raise self._timeout_error(exc) from exc
                if attempt < attempts:
                    continue
                raise UpstreamError(
                    f"cannot reach the upstream of model {self._spec.id!r} at {self._base} "
                    f"after {attempt} attempts: {type(exc).__name__}: {exc}"
                ) from exc
            if response.status_code < 400:
                return response
            detail = await self._error_detail(response)
            if response.status_code < 500 or attempt == attempts:
                raise self._status_error(response.status_code, detail, attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _error_detail(self, response: httpx.Response) -> str:
        try:
            raw = await response.aread()
        except httpx.HTTPError:
            raw = b""
        finally:
            await response.aclose()
        try:
            error = self._decode(_ERROR_BODY, raw, "error body").error
        except UpstreamError:
            error = None  # not OpenAI's shape: its text says what there is to say
        if isinstance(error, _ErrorDetail) and error.message is not None:
            return error.message
        return raw[:200].decode(errors="replace") or "(empty body)"

    def _status_error(self, status: int, detail: str, attempts: int) -> GatewayError:
        who = f"the upstream of model {self._spec.id!r}"
        if status == 400 or status == 422:
            return InvalidRequest(f"{who} rejected the request: {detail}")
        if status == 429:
            return Overloaded(f"{who} is rate limiting us: {detail}", retry_after=5.0)
        if status in (401, 403):
            return UpstreamError(
                f"{who} refused our credentials (HTTP {status}); check the API key in "
                f"{self._spec.api_key_env or 'the model config'}",
                upstream_status=status,
            )
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return UpstreamError(
            f"{who} answered HTTP {status}{tries}: {detail}", upstream_status=status
        )

    def _timeout_error(self, exc: httpx.TimeoutException) -> GenerationTimeout:
        return GenerationTimeout(
            f"the upstream of model {self._spec.id!r} timed out ({type(exc).__name__})"
        )

    # -- response ---------------------------------------------------------------------

    async def _expect_event_stream(self, response: httpx.Response) -> None:
        content_type = response.headers.get("content-type", "")
        if not content_type.startswith("text/event-stream"):
            body = (await response.aread())[:200].decode(errors="replace")
            raise UpstreamError(
                f"the upstream of model {self._spec.id!r} answered "
                f"{content_type or 'no content type'} instead of an event stream: {body!r}"
            )

    async def _events(self, response: httpx.Response, prompt: Prompt) -> AsyncIterator[StreamEvent]:
        finish: FinishReason | None = None
        usage = _Usage()
        chunks = 0
        try:
            async for payload in _sse_data(response):
                if payload == "[DONE]":
                    break
                chunk = self._parse_chunk(payload)
                usage = chunk.usage or usage
                for choice in chunk.choices or ():
                    text = choice.delta.content if choice.delta is not None else choice.text
                    if text:
                        chunks += 1
                        yield TextDelta(text)
                    if choice.finish_reason:
                        finish = _finish_reason(choice.finish_reason)
        except httpx.TimeoutException as exc:
            raise self._timeout_error(exc) from exc
        except httpx.TransportError as exc:
            raise UpstreamError(
                f"the upstream of model {self._spec.id!r} dropped the stream after "
                f"{chunks} chunks: {type(exc).__name__}"
            ) from exc
        if finish is None:
            raise UpstreamError(
                f"the upstream of model {self._spec.id!r} ended the stream after {chunks} "
                "chunks without a finish reason"
            )
        yield StreamEnd(
            finish_reason=finish,
            prompt_tokens=usage.prompt_tokens
            if usage.prompt_tokens is not None
            else await self.count_tokens(prompt),
            completion_tokens=usage.completion_tokens
            if usage.completion_tokens is not None
            else chunks,
        )

    def _parse_chunk(self, payload: str) -> _Chunk:
        chunk = self._decode(_CHUNK, payload, "stream chunk")
        if chunk.error is not None:
            error = chunk.error
            message = error.message if isinstance(error, _ErrorDetail) else error
            raise UpstreamError(f"the upstream of model {self._spec.id!r} failed: {message}")
        return chunk

    def _decode(self, decoder: msgspec.json.Decoder[_T], data: str | bytes, what: str) -> _T:
        """``data`` read as the OpenAI ``what`` that ``decoder`` describes; whatever it
        is instead (not JSON, another shape, a count out of range, nesting deep enough to
        exhaust the parser's stack) is an upstream error, a 502."""
        try:
            return decoder.decode(data)
        except RecursionError:
            reason = "nested too deeply"
        except (msgspec.DecodeError, ValueError) as exc:  # ValueError: not UTF-8
            reason = str(exc)
        raise UpstreamError(
            f"the upstream of model {self._spec.id!r} sent a malformed answer, not an OpenAI "
            f"{what} ({reason}): {data[:200]!r}"
        )


async def _sse_data(response: httpx.Response) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event (multi-line data joined with newlines)."""
    data: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value.removeprefix(" "))
    if data:
        yield "\n".join(data)


def _finish_reason(value: str) -> FinishReason:
    return FinishReason.LENGTH if value == "length" else FinishReason.STOP
