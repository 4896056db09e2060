"""The remote backend: any OpenAI-compatible upstream (vLLM, Ollama, llama.cpp, hosted APIs).

The ``UpstreamClient`` is injected (the manager opens one for all upstreams; tests open
their own). Connection errors and 5xx
answers are retried with exponential backoff, but only before the first byte of the
answer has reached our client: after that a retry would repeat text the client already
has. Whatever the upstream gets wrong becomes a gateway error with a message saying what
happened; the upstream's API key never appears in one.

A stream asks the upstream for server-sent events, a whole completion for one JSON body;
either call takes the other kind of answer too, since some upstreams ignore ``stream``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import msgspec

from llmserver.adapters.inference.answer_schema import (
    check_choices,
    checked_stream,
    strict_schema,
)
from llmserver.adapters.inference.generation import collect
from llmserver.adapters.inference.http_choices import whole_choices, whole_events
from llmserver.adapters.inference.http_request_body import (
    api_base,
    upstream_headers,
    upstream_request,
)
from llmserver.adapters.inference.http_tools import (
    StreamedCalls,
    tools_bound,
)
from llmserver.adapters.inference.http_upstream_answers import (
    SseEvents,
    Usage,
    choice_logprobs,
    error_detail,
    finish_reason,
    parse_answer,
)
from llmserver.adapters.inference.http_upstream_client import (
    TRANSPORT_ERRORS,
    Timeouts,
    UpstreamClient,
    UpstreamResponse,
    is_read_timeout,
)
from llmserver.domain.backend_ports import InferenceBackend
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
from llmserver.domain.registry import ModelSpec
from llmserver.domain.routing.retry import parse_retry_after

DEFAULT_RETRY_AFTER_S = 5.0
"""How long a 429 without a (readable) ``Retry-After`` keeps its upstream aside."""

MESSAGE_OVERHEAD_TOKENS = 8
"""Upper bound on what a chat template adds per message (role headers, separators)."""


class HttpBackend(InferenceBackend):
    def __init__(
        self,
        spec: ModelSpec,
        *,
        client: UpstreamClient,
        read_timeout_s: float = 300.0,
        connect_timeout_s: float = 5.0,
        max_retries: int = 2,
        backoff_s: float = 0.25,
    ) -> None:
        self._spec = spec
        self._base = api_base(spec.source)
        self._upstream = client.upstream(self._base)
        self._path = urlsplit(self._base).path
        self._upstream_model = spec.upstream_model or spec.id
        self._headers = upstream_headers(spec)
        self._timeouts = Timeouts(connect_s=connect_timeout_s, read_s=read_timeout_s)
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
        return (
            MESSAGE_OVERHEAD_TOKENS
            + sum(
                len(m.content.encode())
                + len(m.role.encode())
                + MESSAGE_OVERHEAD_TOKENS
                + sum(len(c.arguments.encode()) + len(c.name) + len(c.id) for c in m.tool_calls)
                + len(m.tool_call_id or "")
                for m in prompt.messages
            )
            + (0 if prompt.tools is None else tools_bound(prompt.tools))
        )

    def min_prompt_tokens(self, prompt: Prompt) -> int:
        # The count above is already cheap (one pass over the bytes, ~0.1 ms a megabyte).
        return 0

    async def generate(self, prompt: Prompt, params: GenerationParams) -> Completion:
        schema = strict_schema(params.constraint)
        async with self._exchange(
            *upstream_request(self._upstream_model, prompt, params, stream=False)
        ) as response:
            if _is_event_stream(response):
                # The response stays open: this ``async with`` closes it, not the events.
                completion = await collect(
                    self._answer(nullcontext(response), prompt, params), params
                )
            else:
                completion = await self._whole_answer(response, prompt, params, asked="JSON")
        if schema is not None:
            check_choices(completion, schema, self._spec.id)
        return completion

    def stream(self, prompt: Prompt, params: GenerationParams) -> AsyncIterator[StreamEvent]:
        schema = strict_schema(params.constraint)
        events = self._answer(
            self._exchange(*upstream_request(self._upstream_model, prompt, params, stream=True)),
            prompt,
            params,
        )
        return events if schema is None else checked_stream(events, schema, self._spec.id)

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

    @asynccontextmanager
    async def _exchange(
        self, path: str, body: Mapping[str, Any]
    ) -> AsyncIterator[UpstreamResponse]:
        """The upstream's answer, its headers read; closed on the way out, whatever the
        way: a cancelled call (our client left) closes the connection, and with it the
        upstream's work on the request. An answer read to its end has already gone back
        to the pool, its connection kept alive."""
        self._in_flight += 1
        try:
            response = await self._send_with_retries(self._path + path, body)
            try:
                yield response
            finally:
                response.close()
        finally:
            self._in_flight -= 1

    async def _send_with_retries(self, path: str, body: Mapping[str, Any]) -> UpstreamResponse:
        data = msgspec.json.encode(body)
        attempts = self._max_retries + 1
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                await asyncio.sleep(self._backoff_s * 2 ** (attempt - 2))
            try:
                response = await self._upstream.send(
                    b"POST", path, data, self._headers, self._timeouts
                )
            except TRANSPORT_ERRORS as exc:
                # A read timeout means the upstream got the request and is slow: retrying
                # would only pile more work on it.
                if is_read_timeout(exc):
                    raise self._timeout_error(exc) from exc
                if attempt < attempts:
                    continue
                raise UpstreamError(
                    f"cannot reach the upstream of model {self._spec.id!r} at {self._base} "
                    f"after {attempt} attempts: {type(exc).__name__}: {exc}"
                ) from exc
            if response.status < 400:
                return response
            detail = await error_detail(response, self._spec.id)
            if response.status < 500 or attempt == attempts:
                raise self._status_error(response, detail, attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _status_error(self, response: UpstreamResponse, detail: str, attempts: int) -> GatewayError:
        who = f"the upstream of model {self._spec.id!r}"
        status = response.status
        if status == 400 or status == 422:
            return InvalidRequest(f"{who} rejected the request: {detail}")
        if status == 429:
            asked = parse_retry_after(response.retry_after, datetime.now(UTC))
            return Overloaded(
                f"{who} is rate limiting us: {detail}",
                retry_after=DEFAULT_RETRY_AFTER_S if asked is None else asked,
            )
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

    def _timeout_error(self, exc: BaseException) -> GenerationTimeout:
        return GenerationTimeout(
            f"the upstream of model {self._spec.id!r} timed out ({type(exc).__name__})"
        )

    # -- response ---------------------------------------------------------------------

    async def _whole_answer(
        self,
        response: UpstreamResponse,
        prompt: Prompt,
        params: GenerationParams,
        *,
        asked: str,
    ) -> Completion:
        """A JSON answer. Without usage, the prompt is counted as the stream path counts
        it, and so is the completion: by the same bound (a token is at least one UTF-8
        byte), capped at max_tokens. The stream path's count of a token a chunk would
        count a whole answer, one chunk, as one token."""
        raw = await self._read_json(response, asked)
        answer = parse_answer(raw, self._spec.id, "completion")
        choices = whole_choices(answer, params, self._spec.id)
        usage = answer.usage or Usage()
        produced = sum(min(len(c.text.encode()), params.max_tokens) for c in choices)
        produced += sum(len(c.arguments.encode()) for each in choices for c in each.tool_calls)
        prompt_tokens, completion_tokens = await self._counts(
            usage, prompt, min(produced, params.n * params.max_tokens)
        )
        first = choices[0]
        return Completion(
            text=first.text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=first.finish_reason,
            tool_calls=first.tool_calls,
            cached_tokens=usage.cached_tokens,
            logprobs=first.logprobs,
            more=tuple(choices[1:]),
        )

    async def post_json(self, path: str, body: Mapping[str, Any]) -> bytes:
        """``body`` POSTed to ``path`` under the upstream's ``/v1`` (retried as every call
        is), and its JSON answer read whole: for the other surfaces an upstream serves
        (``HttpEmbeddingBackend``)."""
        async with self._exchange(path, body) as response:
            return await self._read_json(response, "JSON")

    async def _read_json(self, response: UpstreamResponse, asked: str) -> bytes:
        content_type = response.content_type
        try:
            raw = await response.read()
        except TRANSPORT_ERRORS as exc:
            raise self._read_error(exc, "the connection before the end of its answer") from exc
        if not content_type.startswith("application/json"):
            raise UpstreamError(
                f"the upstream of model {self._spec.id!r} answered "
                f"{content_type or 'no content type'} instead of {asked}: "
                f"{raw[:200].decode(errors='replace')!r}"
            )
        return raw

    def _read_error(self, exc: Exception, dropped: str) -> GatewayError:
        """What a failed read of an answer is: a timeout, or a connection lost part-way
        (``dropped`` says what was lost)."""
        if isinstance(exc, TimeoutError):
            return self._timeout_error(exc)
        return UpstreamError(
            f"the upstream of model {self._spec.id!r} dropped {dropped}: {type(exc).__name__}"
        )

    async def _answer(
        self,
        exchange: AbstractAsyncContextManager[UpstreamResponse],
        prompt: Prompt,
        params: GenerationParams,
    ) -> AsyncGenerator[StreamEvent, None]:
        """The answer ``exchange`` opens, as events, whichever kind the upstream sent.

        One generator from the socket to the gateway, which closes it at the final event:
        every event of a stream passes each generator layer once, so the exchange, the
        event-stream parsing and the whole-answer fallback share one."""
        async with exchange as response:
            if not _is_event_stream(response):
                whole = await self._whole_answer(response, prompt, params, asked="an event stream")
                for event in whole_events(whole):
                    yield event
                return
            finishes: dict[int, FinishReason] = {}
            usage = Usage()
            chunks = 0
            parser = SseEvents()
            calls = StreamedCalls()
            try:
                ended = False
                while not ended:
                    body = await response.next_chunk()
                    ended = body is None
                    for payload in parser.end() if body is None else parser.feed(body):
                        if payload == b"[DONE]":
                            await response.wait_for_end()
                            ended = True
                            break
                        chunk = parse_answer(payload, self._spec.id, "stream chunk")
                        usage = chunk.usage or usage
                        for choice in chunk.choices or ():
                            if choice.index >= params.n:
                                continue
                            text = choice.content
                            logprobs = choice_logprobs(choice, params.logprobs)
                            if text or logprobs:
                                chunks += 1 if text else 0
                                yield TextDelta(text or "", 1, choice.index, logprobs)
                            for delta in calls.deltas(choice.tool_calls, choice.index):
                                chunks += 1
                                yield delta
                            if choice.finish_reason:
                                finishes[choice.index] = finish_reason(
                                    choice.finish_reason, called=calls.called(choice.index)
                                )
            except TRANSPORT_ERRORS as exc:
                raise self._read_error(exc, f"the stream after {chunks} chunks") from exc
            if len(finishes) < params.n:
                raise UpstreamError(
                    f"the upstream of model {self._spec.id!r} ended the stream after {chunks} "
                    "chunks without a finish reason"
                    + (f" for each of its {params.n} choices" if params.n > 1 else "")
                )
            prompt_tokens, completion_tokens = await self._counts(usage, prompt, chunks)
            reason, *more = (finishes[i] for i in range(params.n))
            yield StreamEnd(
                reason,
                prompt_tokens,
                completion_tokens,
                cached_tokens=usage.cached_tokens,
                more=tuple(more),
            )

    async def _counts(self, usage: Usage, prompt: Prompt, produced: int) -> tuple[int, int]:
        """The upstream's token counts, with what it left out counted here: the prompt by
        ``count_tokens``, the completion as ``produced`` (the caller's bound)."""
        prompt_tokens = usage.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = await self.count_tokens(prompt)
        completion_tokens = usage.completion_tokens
        return prompt_tokens, produced if completion_tokens is None else completion_tokens


def _is_event_stream(response: UpstreamResponse) -> bool:
    return response.content_type.startswith("text/event-stream")
