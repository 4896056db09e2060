"""The servers the HTTP benchmarks start, each as a process of its own.

``bare``: a Litestar route that decodes a chat request with msgspec and returns a
same-sized chat completion body, nothing else: the ceiling.
``gateway``: the real app with the full pipeline on (auth from the database, RPM, quota,
response cache, request log, metrics) in front of an instant backend, so the difference
is the gateway's own overhead.
``upstream``: an instant OpenAI-compatible upstream for the proxy benchmark: the ``bare``
answer for ``stream: false``, a whole server-sent event stream at once for ``stream: true``.
``otlp_sink``: where a traced gateway exports its spans (OTLP/HTTP): it reads each batch
and answers 200, as a collector would, keeping nothing.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
import uvicorn
from litestar import Litestar, Request, Response, post

from llmserver.app.routes.openai import protocol as p
from llmserver.domain.backend_ports import EmbeddingBackend
from llmserver.domain.errors import WrongModelKind
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
from llmserver.domain.registry import BackendKind, ModelSpec

MODEL = "instant"
REPLY = "The quick brown fox jumps over the lazy dog. " * 2
REPLY_TOKENS = 20


class InstantBackend:
    """Answers at once with a fixed text: a stand-in for an infinitely fast model."""

    model_id = MODEL

    async def count_tokens(self, prompt: Prompt) -> int:
        assert prompt.messages is not None
        return sum(len(m.content.split()) + 4 for m in prompt.messages)

    def min_prompt_tokens(self, prompt: Prompt) -> int:
        return 0

    async def generate(self, prompt: Prompt, params: GenerationParams) -> Completion:
        tokens = min(params.max_tokens, REPLY_TOKENS)
        return Completion(REPLY, await self.count_tokens(prompt), tokens, FinishReason.LENGTH)

    async def stream(self, prompt: Prompt, params: GenerationParams) -> AsyncIterator[StreamEvent]:
        completion = await self.generate(prompt, params)
        yield TextDelta(completion.text, completion.completion_tokens)
        yield StreamEnd(
            completion.finish_reason, completion.prompt_tokens, completion.completion_tokens
        )

    def status(self) -> BackendStatus:
        return BackendStatus(MODEL, ready=True)

    async def close(self) -> None:
        return None


class InstantBackends:
    def __init__(self) -> None:
        self._backend = InstantBackend()

    def backend(self, model_id: str) -> InstantBackend:
        return self._backend

    def embedder(self, model_id: str) -> EmbeddingBackend:
        raise WrongModelKind(
            model_id, kind="a chat", surface="embeddings", instead="/v1/chat/completions"
        )

    def statuses(self) -> Sequence[BackendStatus]:
        return [self._backend.status()]


SPEC = ModelSpec(id=MODEL, backend=BackendKind.HTTP, source="instant://", context_length=4096)


def _completion(model: str) -> p.ChatCompletion:
    return p.ChatCompletion(
        id="chatcmpl-" + "0" * 32,
        created=int(time.time()),
        model=model,
        choices=[
            p.ChatChoice(0, p.AssistantMessage("assistant", REPLY), FinishReason.LENGTH.value)
        ],
        usage=p.Usage(12, REPLY_TOKENS, 12 + REPLY_TOKENS),
    )


@post("/v1/chat/completions", status_code=200)
async def bare_chat(request: Request[Any, Any, Any]) -> p.ChatCompletion:
    return _completion(p.CHAT_DECODER.decode(await request.body()).model)


def bare_app() -> Litestar:
    return Litestar([bare_chat], openapi_config=None, logging_config=None)


class _UpstreamRequest(msgspec.Struct):
    """What the upstream reads of a request: callers (the gateway, LiteLLM) send fields
    of their own, which it skips rather than refusing as the gateway's schema would."""

    model: str
    stream: bool = False


_UPSTREAM_DECODER = msgspec.json.Decoder(_UpstreamRequest)


@functools.cache
def _event_stream(model: str) -> bytes:
    """The whole stream, built once per model name: a role chunk, the reply in four
    chunks, a finish chunk, a usage chunk and ``[DONE]``, like an OpenAI stream."""

    def chunk(delta: p.Delta, finish: str | None = None, usage: p.Usage | None = None) -> bytes:
        choices = [p.ChunkChoice(0, delta, finish)] if usage is None else []
        body = p.ChatCompletionChunk("chatcmpl-" + "0" * 32, 0, model, choices, usage=usage)
        return b"data: " + msgspec.json.encode(body) + b"\n\n"

    words = REPLY.split(" ")
    quarter = len(words) // 4
    parts = [" ".join(words[i * quarter : (i + 1) * quarter if i < 3 else None]) for i in range(4)]
    events = [chunk(p.Delta(role="assistant", content=""))]
    events += [
        chunk(p.Delta(content=part if i == 0 else " " + part)) for i, part in enumerate(parts)
    ]
    events.append(chunk(p.Delta(), FinishReason.LENGTH.value))
    events.append(chunk(p.Delta(), usage=p.Usage(12, REPLY_TOKENS, 12 + REPLY_TOKENS)))
    return b"".join(events) + b"data: [DONE]\n\n"


@post("/v1/chat/completions", status_code=200)
async def upstream_chat(request: Request[Any, Any, Any]) -> Response[bytes]:
    body = _UPSTREAM_DECODER.decode(await request.body())
    if body.stream:
        return Response(_event_stream(body.model), media_type="text/event-stream")
    return Response(msgspec.json.encode(_completion(body.model)), media_type="application/json")


def upstream_app() -> Litestar:
    return Litestar([upstream_chat], openapi_config=None, logging_config=None)


@post("/v1/traces", status_code=200)
async def otlp_traces(request: Request[Any, Any, Any]) -> Response[bytes]:
    await request.body()
    return Response(b"", media_type="application/x-protobuf")


def otlp_sink_app() -> Litestar:
    return Litestar([otlp_traces], openapi_config=None, logging_config=None)


def gateway_app() -> object:
    from llmserver.app.composition import Overrides
    from llmserver.app.factory import asgi_app
    from llmserver.app.settings import load_settings

    settings = load_settings()
    return asgi_app(settings, Overrides(backends=InstantBackends(), specs=[SPEC]))


def main() -> None:
    parser = argparse.ArgumentParser()
    apps = {
        "bare": bare_app,
        "gateway": gateway_app,
        "upstream": upstream_app,
        "otlp_sink": otlp_sink_app,
    }
    parser.add_argument("which", choices=list(apps))
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = apps[args.which]()
    # The gateway runs on the protocol `llmserver serve` uses; the bare route and the
    # upstream on uvicorn's own, as a user's plain Litestar app would.
    protocol = "llmserver.app.server_protocol:HeadWithBodyProtocol"
    http = protocol if args.which == "gateway" else "auto"
    uvicorn.run(
        app,  # type: ignore[arg-type]
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        access_log=False,
        http=http,
    )


if __name__ == "__main__":
    main()
