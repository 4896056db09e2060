"""uvicorn's httptools protocol with a leaner response writer of our own.

Two things differ from uvicorn's ``RequestResponseCycle.send``; everything else (parsing,
keep-alive, pipelining, flow control, drain on shutdown) is uvicorn's:

- **The head goes out with the first body part, and later parts of one event-loop turn
  in one write.** uvicorn writes the status line and headers as soon as the app sends
  ``http.response.start``, then each body part as a write of its own: a system call, a TCP
  segment, and a client that wakes up, for each. On the 2-core benchmark machine (a VM
  where waking another process is dear) a ``no-cache`` completion's median overhead over
  its upstream fell by about 0.1 ms, and the gateway's CPU per sequential call by about a
  tenth, when head and body became one write. So the head is kept until the first body
  part, and the two go out at once (a JSON answer: one write; a stream: its first event,
  the client's first text, without waiting for the rest). Later parts are kept until the
  end of the turn they were sent in, or the body's last part, and written together: the
  other events of an upstream read that delivered several go out in one write (a 7-event
  instant stream: three writes instead of eight; its first text came 0.07 ms sooner than
  when every part waited for the end of the turn, alternating runs); events that come apart
  in time (a model generating) go out at the end of their own turns, so nothing waits longer
  than the turn that produced it. A head whose body comes in a later turn goes alone at the
  end of its turn. What is kept is at most what one turn produces, which our producers
  bound: the events of one upstream read, or one cached answer replayed; the transport's
  own flow control applies between turns.
- **Header bytes are checked in two passes, not two per header.** uvicorn runs its
  name and value patterns once per header (28 regex searches for a cached answer's 14
  headers). Both patterns are single character classes, so one pass over the names
  joined, and one over the values joined, refuse exactly what the per-header searches
  refuse; each pass is ``bytes.translate`` deleting the class's bytes (read from the
  pattern), a third of a regex search's time.

The hook is ``HttpToolsProtocol._start_asgi_task`` (uvicorn 0.34 and later), through
which every request's cycle, pipelined ones included, starts; the cycle's state is
uvicorn's own attributes, which ``tests/integration/app/test_server_protocol.py`` drives
side by side with uvicorn's writer.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

if TYPE_CHECKING:
    from uvicorn._types import ASGI3Application, ASGISendEvent


def _refused_by(pattern: re.Pattern[bytes]) -> bytes:
    """The bytes uvicorn's single-class ``pattern`` matches, read from the pattern itself
    so the two can never disagree."""
    return bytes(b for b in range(256) if pattern.match(bytes((b,))))


_NAME_REFUSED = _refused_by(HEADER_RE)
_VALUE_REFUSED = _refused_by(HEADER_VALUE_RE)


def _holds_any(data: bytes, refused: bytes) -> bool:
    """Whether ``data`` holds one of the ``refused`` bytes: a table lookup a byte in C, a
    third of the regular expression's search over a head's 200-odd bytes."""
    return len(data.translate(None, refused)) != len(data)


class HeadWithBodyProtocol(HttpToolsProtocol):
    """Pass to uvicorn as ``http=``."""

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        cycle.__class__ = _HeadWithBodyCycle  # the same object, one method more specific
        super()._start_asgi_task(cycle, app)


class _HeadWithBodyCycle(RequestResponseCycle):
    _unsent: list[bytes] | None = None  # what this turn sent, not yet written
    _body_begun = False  # the first body part went out with the head

    async def send(self, message: ASGISendEvent) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        event: dict[str, Any] = message  # type: ignore[assignment]  # ASGI's union, read by hand
        kind = event["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.start', but got '{kind}'."
                )
            self.response_started = True
            self.waiting_for_100_continue = False
            self._keep(self._head(event["status"], event.get("headers", ())))
        elif self.response_complete:
            raise RuntimeError(f"Unexpected ASGI message '{kind}' sent, after response completed.")
        elif kind != "http.response.body":
            raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{kind}'.")
        else:
            self._body(event.get("body", b""), event.get("more_body", False))

    def _body(self, body: bytes, more_body: bool) -> None:
        """One body part, framed; the first and the last write what is kept at once."""
        if self.scope["method"] == "HEAD":
            self.expected_content_length = 0
            data = b""
        elif self.chunked_encoding:
            data = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
            if not more_body:
                data += b"0\r\n\r\n"
        else:
            if len(body) > self.expected_content_length:
                raise RuntimeError("Response content longer than Content-Length")
            self.expected_content_length -= len(body)
            data = body
        if data:
            self._keep(data)
        if not self._body_begun:
            self._body_begun = True
            self._write_unsent()
        if not more_body:
            self._write_unsent()
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()  # the next pipelined request, or the keep-alive timer

    def _head(self, status: int, extra: Iterable[tuple[bytes, bytes]]) -> bytes:
        """The status line and headers, as uvicorn writes them, and its state set as
        uvicorn sets it (content length, chunking, keep-alive). uvicorn's loop over the
        headers, with the byte checks done once over all of them: building the head in
        C-level steps instead (names lowered in one join, lines joined with ``zip`` and
        ``chain``) ran fewer bytecodes but took longer, 4.7-5.8 against 3.4-3.9 µs for a
        completion's 9-13 headers."""
        headers = [*self.default_headers, *extra]
        if _holds_any(b"".join([name for name, _ in headers]), _NAME_REFUSED):
            raise RuntimeError("Invalid HTTP header name.")
        if _holds_any(b"".join([value for _, value in headers]), _VALUE_REFUSED):
            raise RuntimeError("Invalid HTTP header value.")
        if self.access_log:
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                get_client_addr(self.scope),
                self.scope["method"],
                get_path_with_query_string(self.scope),
                self.scope["http_version"],
                status,
            )
        content = [STATUS_LINE[status]]
        connection_close = False
        for raw_name, value in headers:
            name = raw_name.lower()
            if name == b"content-length" and self.chunked_encoding is None:
                self.expected_content_length = int(value.decode())
                self.chunked_encoding = False
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self.expected_content_length = 0
                self.chunked_encoding = True
            elif name == b"connection" and b"close" in [
                token.lower().strip() for token in value.split(b",")
            ]:
                self.keep_alive = False
                connection_close = True
            content += (name, b": ", value, b"\r\n")
        if not self.keep_alive and not connection_close:
            content.append(b"connection: close\r\n")
        if (
            self.chunked_encoding is None
            and self.scope["method"] != "HEAD"
            and status not in (204, 304)
        ):
            self.chunked_encoding = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        return b"".join(content)

    def _keep(self, data: bytes) -> None:
        if self._unsent is None:
            self._unsent = [data]
            asyncio.get_running_loop().call_soon(self._write_unsent)
        else:
            self._unsent.append(data)

    def _write_unsent(self) -> None:
        """At the end of the turn, or with the body's last part."""
        unsent, self._unsent = self._unsent, None
        if unsent and not self.disconnected and not self.transport.is_closing():
            self.transport.write(b"".join(unsent))  # one item: joined, it is that item
