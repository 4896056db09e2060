"""One keep-alive HTTP/1.1 connection to an upstream, and the answer read on it.

The wire work is httptools' (llhttp, in C: status line, headers, chunked bodies); what is
left in Python is a request written in one piece and callbacks that append to a buffer.
That is why this client exists (``http_upstream_client`` says what it replaced and the
measurements). An answer hands its connection back to its pool when it has been read to
its end and the upstream keeps the connection alive; an answer closed before its end
closes the connection, which tells the upstream to stop working on the request.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

import httptools


class TransportError(Exception):
    """The network or the upstream failed while sending a request or reading its answer."""


class ConnectFailed(TransportError):
    """No connection to the upstream (refused, unreachable, timed out, TLS or proxy
    failure): the upstream never saw the request."""


class ReadTimedOut(TransportError, TimeoutError):
    """Connected, and the upstream sent nothing for the whole read timeout: it has the
    request and is slow."""


class Dropped(TransportError):
    """The connection ended, or carried something that is not HTTP, before the end of
    the answer."""


PAUSE_BYTES = 256 * 1024
"""Unread answer bytes held before the socket stops being read (the reader is slower
than the upstream): the upstream then waits on TCP rather than on our memory."""


class Connection(asyncio.Protocol):
    """The protocol of one connection; one request at a time (no pipelining)."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._wake: asyncio.Future[None] | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._ended: TransportError | None = None  # the connection is gone, and why
        self.status = 0
        self.content_type = ""
        self.retry_after = ""
        self._framed = False  # the headers give the body a length, or chunks
        self._head = False  # the answer's status line and headers have come
        self._complete = False  # ... and its whole body
        self._until_eof = False  # a body with neither length nor chunks: ends at EOF
        self._keep_alive = False
        self.idle_since = 0.0

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast("asyncio.Transport", transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._end(Dropped(f"not HTTP ({exc})"), abort=True)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._until_eof and self._head and exc is None and not self._complete:
            self._complete = True  # the end of such a body is the connection's end
            self._signal()
        self._end(Dropped("the connection"), abort=False)

    # -- httptools callbacks --------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-type":
            self.content_type = value.decode("latin-1").strip()
        elif name == b"retry-after":
            self.retry_after = value.decode("latin-1")
        elif name in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        # Without a length or chunks a body ends where the connection does (HTTP/1.1
        # allows it), and llhttp, told nothing of the end, never calls it complete.
        self._until_eof = not self._framed and self.status not in (204, 304)
        # Asked now: once the message is complete, llhttp has reset for the next one.
        self._keep_alive = self._parser.should_keep_alive() and not self._until_eof
        self._head = True
        self._signal()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > PAUSE_BYTES and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._signal()

    def on_message_complete(self) -> None:
        self._complete = True
        self._signal()

    # -- used by the pool and the answer --------------------------------------------------

    def reusable(self) -> bool:
        transport = self._transport
        return (
            self._complete
            and self._ended is None
            and transport is not None
            and not transport.is_closing()
            and self._keep_alive
        )

    def send(self, request: bytes) -> None:
        """Writes a request; the connection's previous answer, if any, was read whole."""
        self._parser = httptools.HttpResponseParser(self)
        self.status, self.content_type, self.retry_after = 0, "", ""
        self._head = self._complete = self._until_eof = self._framed = False
        assert self._transport is not None
        self._transport.write(request)

    async def head(self, read_s: float) -> None:
        while not self._head:
            await self._wait(read_s)

    async def next_chunk(self, read_s: float) -> bytes | None:
        """The next piece of the body as it came, or None at its end."""
        while not self._chunks:
            if self._complete:
                return None
            await self._wait(read_s)
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._paused and self._buffered <= PAUSE_BYTES // 2:
            self._resume()
        return chunk

    async def whole(self, read_s: float) -> bytes:
        """The rest of the body, once it has all come (a JSON answer: usually at once)."""
        parts: list[bytes] = []
        while True:
            parts += self._chunks
            self._chunks.clear()
            self._buffered = 0
            if self._paused:
                self._resume()  # all of it is wanted: holding it back would only stall
            if self._complete:
                return parts[0] if len(parts) == 1 else b"".join(parts)
            await self._wait(read_s)

    def close(self) -> None:
        self._end(Dropped("closed by us"), abort=True)

    # -- internals ----------------------------------------------------------------------

    async def _wait(self, read_s: float) -> None:
        """Until the upstream sends something or the connection ends; at most ``read_s``.
        A timer of the loop's own, not ``asyncio.timeout``: this runs on every answer,
        and the timer is the cheaper of the two by a few microseconds."""
        if self._ended is not None:
            raise self._ended
        loop = asyncio.get_running_loop()
        wake = self._wake = loop.create_future()
        timer = loop.call_later(read_s, _time_out, wake, read_s)
        try:
            await wake
        finally:
            timer.cancel()
            self._wake = None

    def _resume(self) -> None:
        self._paused = False
        if self._transport is not None:
            self._transport.resume_reading()

    def _signal(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _end(self, why: TransportError, *, abort: bool) -> None:
        if self._ended is None:
            self._ended = why
        if abort and self._transport is not None:
            self._transport.abort()
        self._signal()


def _time_out(wake: asyncio.Future[None], read_s: float) -> None:
    if not wake.done():
        wake.set_exception(ReadTimedOut(f"no answer for {read_s:g} s"))
