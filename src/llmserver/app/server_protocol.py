"""uvicorn's httptools protocol, writing a response's head together with its first body.

uvicorn writes the status line and headers as soon as the app sends
``http.response.start``, then the body as a second write: two system calls, two TCP
segments, and a client that wakes up for each. On the 2-core benchmark machine (a VM
where waking another process is dear) a ``no-cache`` completion's median overhead over
its upstream fell by about 0.1 ms and the gateway process's CPU per sequential call by
about a tenth when the two became one write. So the head is held, and goes out with the
first body part sent in the same event-loop turn, which is every JSON answer and the
first event of a stream; a body that comes later (a stream whose first event takes time)
finds the head already sent at the end of that turn, as before.

The hook is ``HttpToolsProtocol._start_asgi_task`` (uvicorn 0.34 and later), through
which every request's cycle, pipelined ones included, starts.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

if TYPE_CHECKING:
    from uvicorn._types import ASGI3Application, ASGISendEvent


class HeadWithBodyProtocol(HttpToolsProtocol):
    """Pass to uvicorn as ``http=``."""

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        cycle.__class__ = _HeadWithBodyCycle  # the same object, one method more specific
        super()._start_asgi_task(cycle, app)


class _HeadWithBodyCycle(RequestResponseCycle):
    _held: bytes | None = None

    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] == "http.response.start" and not self.response_started:
            transport = self.transport
            holder = _Holder(transport)
            self.transport = holder  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = transport
            self._held = b"".join(holder.writes)
            asyncio.get_running_loop().call_soon(self._write_held)
            return
        held, self._held = self._held, None
        if held is None:
            await super().send(message)
            return
        transport = self.transport
        prefixed = _Prefixed(transport, held)
        self.transport = prefixed  # type: ignore[assignment]
        try:
            await super().send(message)
        finally:
            self.transport = transport
            if prefixed.head is not None and not self.disconnected:
                transport.write(prefixed.head)  # a body that wrote nothing (HEAD, empty)

    def _write_held(self) -> None:
        """End of the turn: no body came with the head, so the head goes alone."""
        held, self._held = self._held, None
        if held is not None and not self.disconnected and not self.transport.is_closing():
            self.transport.write(held)


class _Holder:
    """Stands in for the transport while uvicorn writes a head: keeps what it writes."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Prefixed:
    """Stands in for the transport while uvicorn writes a body: the held head goes first,
    in the same write."""

    def __init__(self, transport: asyncio.Transport, head: bytes) -> None:
        self._transport = transport
        self.head: bytes | None = head

    def write(self, data: bytes) -> None:
        head, self.head = self.head, None
        self._transport.write(data if head is None else head + data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
