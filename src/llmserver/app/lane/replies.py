"""Answers as plain ASGI apps: what the completion routes send, built from raw header pairs.

Litestar's ``Response`` path (header containers, content negotiation, encoder lookup) cost
more than the rest of a cache hit; these send the messages themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from litestar.types import Receive, Scope, Send

from llmserver.app.errors import ErrorReply
from llmserver.app.lane.disconnect import DisconnectWatch
from llmserver.app.routes.openai.protocol import ENCODER

Headers = list[tuple[bytes, bytes]]


class JsonReply:
    """A finished JSON answer: two messages."""

    __slots__ = ("_body", "_headers", "_status")

    def __init__(self, body: bytes, headers: Headers, status: int = 200) -> None:
        self._status = status
        self._body = body
        self._headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            *headers,
        ]

    @classmethod
    def error(cls, reply: ErrorReply) -> JsonReply:
        """An error in the shape and with the headers Litestar's handler would send."""
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()]
        return cls(ENCODER.encode(reply.body), headers, reply.status)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self._status, "headers": self._headers}
        )
        await send({"type": "http.response.body", "body": self._body, "more_body": False})


SSE_HEADERS: Headers = [
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each event on as it comes
]
SSE_CONTENT_TYPE = (b"content-type", b"text/event-stream; charset=utf-8")


class SseReply:
    """Server-sent events, each chunk of ``events`` sent as it comes.

    Litestar's streaming response listened for the client leaving in an anyio task group:
    a task, cancel scopes and a cancellation per stream, about 0.3 ms of a streamed answer
    from an instant upstream (measured in-process). The completion lane's
    ``DisconnectWatch`` listens here instead (a task only for a stream still going after
    its ``WAIT_S``): a client that leaves cancels the stream, which ends as Litestar's
    did, ``events`` closed, no error raised.
    """

    __slots__ = ("_events", "_headers")

    def __init__(self, events: AsyncGenerator[bytes, None], headers: Headers) -> None:
        self._events = events
        self._headers = [*SSE_HEADERS, *headers, SSE_CONTENT_TYPE]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self._headers})
        watch = DisconnectWatch(receive)
        try:
            async for chunk in self._events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not watch.client_left():
                raise
        finally:
            watch.close()
            await self._events.aclose()
