"""The prompt tokens an upstream read from its prompt cache (OpenAI's
``usage.prompt_tokens_details.cached_tokens``) reach the completion, streamed or whole:
what ``cached_input_price_per_mtok`` prices."""

from __future__ import annotations

import pytest

from integration.inference.fake_upstream import Answers, FakeUpstream
from llmserver.adapters.inference.http_backend import HttpBackend
from llmserver.adapters.inference.http_upstream_client import UpstreamClient
from llmserver.domain.inference import ChatMessage, GenerationParams, Prompt, StreamEnd
from llmserver.domain.registry import BackendKind, ModelSpec

CHAT = Prompt(messages=(ChatMessage("user", "Hi"),))
PARAMS = GenerationParams(max_tokens=9)


@pytest.mark.parametrize("answers", ["sse", "json"])
async def test_the_upstreams_cached_prompt_tokens_are_reported(answers: Answers) -> None:
    upstream = FakeUpstream(answers=answers, cached_tokens=5)
    await upstream.start()
    try:
        async with UpstreamClient() as client:
            spec = ModelSpec(id="remote", backend=BackendKind.HTTP, source=upstream.url)
            backend = HttpBackend(spec, client=client, read_timeout_s=5.0)
            *_, end = [event async for event in backend.stream(CHAT, PARAMS)]
            completion = await backend.generate(CHAT, PARAMS)
    finally:
        await upstream.stop()
    assert isinstance(end, StreamEnd)
    assert (end.prompt_tokens, end.cached_tokens) == (7, 5)
    assert (completion.prompt_tokens, completion.cached_tokens) == (7, 5)
