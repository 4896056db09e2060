"""``SseReply``: the messages of a stream, a client that leaves mid-stream (the stream stops,
its events closed, the reply ends quietly), and a cancellation from outside (the server
stopping) that stays one. The live disconnect cases are in tests/integration/reliability."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from litestar.types import ReceiveMessage

from llmserver.app.lane.disconnect import DisconnectWatch
from llmserver.app.lane.replies import SseReply

SCOPE: dict[str, Any] = {"type": "http"}


class Events:
    """A stream of ``count`` chunks, then (``hang``) a wait that never ends."""

    def __init__(self, count: int, *, hang: bool = False) -> None:
        self.count = count
        self.hang = hang
        self.closed = False

    async def run(self) -> AsyncGenerator[bytes, None]:
        try:
            for i in range(self.count):
                yield b"data: %d\n\n" % i
            if self.hang:
                await asyncio.Event().wait()
        finally:
            self.closed = True


async def _never() -> ReceiveMessage:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def _gone() -> ReceiveMessage:
    return {"type": "http.disconnect"}


async def test_a_stream_sends_its_head_every_chunk_and_an_end() -> None:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    events = Events(2)
    reply = SseReply(events.run(), [(b"x-cache", b"MISS")])
    await reply(SCOPE, _never, send)  # type: ignore[arg-type]

    assert sent[0] == {
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            (b"x-cache", b"MISS"),
            (b"content-type", b"text/event-stream; charset=utf-8"),
        ],
    }
    assert [(m["body"], m["more_body"]) for m in sent[1:]] == [
        (b"data: 0\n\n", True),
        (b"data: 1\n\n", True),
        (b"", False),
    ]
    assert events.closed


async def test_a_client_that_leaves_stops_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DisconnectWatch, "WAIT_S", 0.001)
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    events = Events(1, hang=True)
    task = asyncio.create_task(SseReply(events.run(), [])(SCOPE, _gone, send))  # type: ignore[arg-type]
    await asyncio.wait_for(task, 5)  # ends, and without an error

    assert events.closed
    assert task.cancelling() == 0
    assert [m.get("body") for m in sent[1:]] == [b"data: 0\n\n"]  # no end: nobody to read it


async def test_the_server_cancelling_a_stream_is_a_cancellation() -> None:
    async def send(message: Any) -> None:
        return None

    events = Events(1, hang=True)
    task = asyncio.create_task(SseReply(events.run(), [])(SCOPE, _never, send))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events.closed
