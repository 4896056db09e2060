"""Reading a request body from the raw ASGI ``receive``: bounded in size and in time.

Without a time bound, a client that sends its body a byte a second holds the request (its
connection, its handler, and for the completion routes an authenticated slot of work) for
as long as it likes.
"""

from __future__ import annotations

import asyncio

from litestar.exceptions import ClientException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.types import Receive, ReceiveMessage, Scope

from llmserver.app.logging import scope_header


class ClientDisconnected(ClientException):
    """The client went away before its answer was ready (nginx's 499)."""

    status_code = 499

    def __init__(self) -> None:
        # A detail of its own: Litestar's default is the status's HTTP phrase, and 499 has
        # none (raising this bare was a ValueError, logged as a 500).
        super().__init__(detail="The client closed the request.")


class BodyTimeout(ClientException):
    """The body did not arrive in time (408, code ``request_timeout``)."""

    status_code = 408


async def read_body(scope: Scope, receive: Receive, limit: int, timeout_s: float) -> bytes:
    """The whole request body, refused with 413 past ``limit`` bytes (announced or sent) and
    with 408 when the rest of it takes longer than ``timeout_s`` after its first part.

    A body that comes whole in the first message (nearly every request) is never timed:
    arming a timer costs microseconds on the benchmarked completion path.
    """
    announced = scope_header(scope, b"content-length")
    if announced is not None and announced.isdigit() and int(announced) > limit:
        raise RequestEntityTooLarge
    message = await receive()
    first = _chunk(message, 0, limit)
    if not message.get("more_body", False):
        return first
    try:
        async with asyncio.timeout(timeout_s):
            return await _rest(receive, first, limit)
    except TimeoutError:
        raise BodyTimeout(
            f"The request body did not arrive within {timeout_s:g} s; send it faster."
        ) from None


async def _rest(receive: Receive, first: bytes, limit: int) -> bytes:
    chunks = [first]
    size = len(first)
    while True:
        message = await receive()
        chunk = _chunk(message, size, limit)
        size += len(chunk)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _chunk(message: ReceiveMessage, size: int, limit: int) -> bytes:
    """The message's body bytes, checked: the client is still there, the body not too big."""
    if message["type"] != "http.request":
        raise ClientDisconnected
    chunk: bytes = message.get("body", b"")
    if size + len(chunk) > limit:
        raise RequestEntityTooLarge
    return chunk
