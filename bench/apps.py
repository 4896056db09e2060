"""The two servers the gateway benchmark compares, run as separate processes.

``bare``: a Litestar route that decodes a chat request with msgspec and returns a
same-sized chat completion body, nothing else: the ceiling.
``gateway``: the real app with the full pipeline on (auth from the database, RPM, quota,
response cache, request log, metrics) in front of an instant backend, so the difference
is the gateway's own overhead.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import uvicorn
from litestar import Litestar, Request, post

from llmserver.app.routes.openai import protocol as p
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

    def statuses(self) -> Sequence[BackendStatus]:
        return [self._backend.status()]


SPEC = ModelSpec(id=MODEL, backend=BackendKind.HTTP, source="instant://", context_length=4096)


@post("/v1/chat/completions", status_code=200)
async def bare_chat(request: Request[Any, Any, Any]) -> p.ChatCompletion:
    body = p.CHAT_DECODER.decode(await request.body())
    return p.ChatCompletion(
        id="chatcmpl-" + "0" * 32,
        created=int(time.time()),
        model=body.model,
        choices=[
            p.ChatChoice(0, p.AssistantMessage("assistant", REPLY), FinishReason.LENGTH.value)
        ],
        usage=p.Usage(12, REPLY_TOKENS, 12 + REPLY_TOKENS),
    )


def bare_app() -> Litestar:
    return Litestar([bare_chat], openapi_config=None, logging_config=None)


def gateway_app() -> object:
    from llmserver.app.factory import Overrides, asgi_app
    from llmserver.app.settings import load_settings

    settings = load_settings()
    return asgi_app(settings, Overrides(backends=InstantBackends(), specs=[SPEC]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("which", choices=["bare", "gateway"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = bare_app() if args.which == "bare" else gateway_app()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_config=None, access_log=False)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
