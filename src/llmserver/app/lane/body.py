"""Reading a request body from the raw ASGI ``receive``: bounded in size and in time.

Without a time bound, a client that sends its body a byte a second holds the request (its
connection, its handler, and for the completion routes an authenticated slot of work) for
as long as it likes.
"""

from __future__ import annotations

import asyncio
import contextvars
import time

from litestar.exceptions import ClientException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.types import Receive, ReceiveMessage, Scope

from llmserver.app.lane.record import scope_header


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


BARE_CONTEXT = contextvars.Context()
"""What one-turn-later callbacks run in (here and in the completion routes' disconnect
watch): they read no context variable, and passing one saves copying the request's context
for a callback that a fast request cancels unrun."""


class _Timer:
    """A body read's deadline. It is set (``arm``) only once the read has waited a turn of
    the event loop: a body that comes whole with the request, as nearly every one does,
    never suspends that long, and setting a timer on every read cost about a microsecond
    on the benchmarked completion path. Class attributes, not ``__init__``: making one is
    then a bare allocation."""

    handle: asyncio.TimerHandle | None = None
    expired = False
    deadline = 0.0
    cancelling = 0
    """The task's pending cancellations when armed: they are not the timer's."""

    def arm(self, task: asyncio.Task[object], seconds: float) -> None:
        self.cancelling = task.cancelling()
        self.deadline = time.monotonic() + seconds
        self._set(task, seconds)

    def _set(self, task: asyncio.Task[object], seconds: float) -> None:
        self.handle = task.get_loop().call_later(seconds, self._expire, task, context=BARE_CONTEXT)

    def _expire(self, task: asyncio.Task[object]) -> None:
        # libuv counts time in whole milliseconds, so a uvloop timer fires up to one early
        # (200 timers of 20 ms here: the shortest took 19.2 ms; in CI a 408 "not within
        # 1 s" went out after 0.9998 s): one that fires early is set again for the rest.
        left = self.deadline - time.monotonic()
        if left > 0:
            self._set(task, left)
            return
        self.expired = True
        task.cancel()

    def fired(self, task: asyncio.Task[object]) -> bool:
        """Whether a cancellation was the timer's alone; if so it is undone (the read ends
        in a 408). One from outside as well (the server stopping) still propagates."""
        return self.expired and task.uncancel() <= self.cancelling


async def read_body(scope: Scope, receive: Receive, limit: int, timeout_s: float) -> bytes:
    """The whole request body, refused with 413 past ``limit`` bytes (announced or sent) and
    with 408 when it has not all come ``timeout_s`` after the read first waited for it.
    """
    announced = scope_header(scope, b"content-length")
    if announced is not None and announced.isdigit() and int(announced) > limit:
        raise RequestEntityTooLarge
    task = asyncio.current_task()
    assert task is not None  # read in a coroutine
    timer = _Timer()
    arming = task.get_loop().call_soon(timer.arm, task, timeout_s, context=BARE_CONTEXT)
    try:
        message = await receive()
        first = _chunk(message, 0, limit)
        if not message.get("more_body", False):
            return first
        return await _rest(receive, first, limit)
    except asyncio.CancelledError:
        if not timer.fired(task):
            raise
        raise BodyTimeout(
            f"The request body did not arrive within {timeout_s:g} s; send it faster."
        ) from None
    finally:
        arming.cancel()
        if timer.handle is not None:
            timer.handle.cancel()


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
