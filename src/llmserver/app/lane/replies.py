"""Answers as plain ASGI apps: what the completion routes send, built from raw header pairs.

Litestar's ``Response`` path (header containers, content negotiation, encoder lookup) cost
more than the rest of a cache hit; these send the messages themselves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from litestar.response.streaming import ASGIStreamingResponse
from litestar.types import Receive, Scope, Send

from llmserver.app.errors import ErrorReply
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


SSE_HEADERS = {
    "cache-control": "no-cache",
    "x-accel-buffering": "no",  # nginx: pass each event on as it comes
}


def sse_reply(events: AsyncIterator[bytes], headers: dict[str, str]) -> ASGIStreamingResponse:
    """Server-sent events. Litestar's low-level streaming response (it needs no ``Request``)
    also listens for the client leaving and then stops the stream, closing ``events``."""
    return ASGIStreamingResponse(
        iterator=events, media_type="text/event-stream", headers={**SSE_HEADERS, **headers}
    )
