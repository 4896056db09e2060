"""The http backend reuses its connections to an upstream that keeps them alive: a JSON
answer or a whole stream, one after another, go over one connection (the previous
client opened a connection per stream)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from llmserver.adapters.inference.http_backend import HttpBackend
from llmserver.adapters.inference.http_upstream_client import UpstreamClient
from llmserver.domain.inference import ChatMessage, GenerationParams, Prompt
from llmserver.domain.registry import BackendKind, ModelSpec

CALLS = 20
ANSWER = {
    "id": "c",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}
CHUNKS = [
    b'data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n',
    b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}\n\n',
    b"data: [DONE]\n\n",
]


class KeepAliveUpstream:
    """An aiohttp server (keep-alive on) that counts the connections its requests came on."""

    def __init__(self) -> None:
        self.connections: set[int] = set()

    async def chat(self, request: web.Request) -> web.StreamResponse:
        self.connections.add(id(request.transport))
        body = await request.json()
        if not body.get("stream"):
            return web.json_response(ANSWER)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in CHUNKS:
            await response.write(chunk)
        await response.write_eof()
        return response


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, KeepAliveUpstream]]:
    server = KeepAliveUpstream()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server.chat)
    runner = web.AppRunner(app)
    await runner.setup()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield f"http://127.0.0.1:{port}", server
    await runner.cleanup()


def prompt() -> Prompt:
    return Prompt(messages=(ChatMessage("user", "hello"),))


@pytest.mark.parametrize("streamed", [False, True])
async def test_sequential_calls_share_one_connection(
    upstream: tuple[str, KeepAliveUpstream], streamed: bool
) -> None:
    url, server = upstream
    spec = ModelSpec(id="remote", backend=BackendKind.HTTP, source=url)
    params = GenerationParams(max_tokens=8)
    async with UpstreamClient() as client:
        backend = HttpBackend(spec, client=client)
        for _ in range(CALLS):
            if streamed:
                events = [event async for event in backend.stream(prompt(), params)]
                assert events, "the stream gave nothing"
            else:
                assert (await backend.generate(prompt(), params)).text == "hi"

    assert len(server.connections) == 1
