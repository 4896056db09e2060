"""The server protocol's response head is uvicorn's, byte for byte, and leaves the cycle in
uvicorn's state (body framing, keep-alive), for heads of every kind it reads."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from llmserver.app.server_protocol import _HeadWithBodyCycle

DEFAULTS = [(b"date", b"Wed, 02 Dec 2026 09:00:00 GMT"), (b"server", b"uvicorn")]


class _Transport:
    def __init__(self) -> None:
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str) -> Any:
        return None


def _cycle(kind: type[RequestResponseCycle], method: str, keep_alive: bool) -> Any:
    transport = _Transport()
    cycle = kind(
        {"method": method, "http_version": "1.1"},  # type: ignore[typeddict-item]
        transport,  # type: ignore[arg-type]
        FlowControl(transport),  # type: ignore[arg-type]
        logging.getLogger("test"),
        logging.getLogger("test.access"),
        False,
        list(DEFAULTS),
        asyncio.Event(),
        False,
        keep_alive,
        lambda: None,
    )
    return cycle


def _state(cycle: Any) -> tuple[object, ...]:
    return cycle.expected_content_length, cycle.chunked_encoding, cycle.keep_alive


HEADS = [
    [],
    [(b"Content-Type", b"application/json"), (b"Content-Length", b"410")],
    [(b"x-cache", b"HIT"), (b"x-ratelimit-limit-requests", b"10"), (b"content-length", b"2")],
    [(b"content-type", b"text/event-stream")],  # no length: chunked
    [(b"Transfer-Encoding", b"Chunked")],
    [(b"content-length", b"5"), (b"content-length", b"7")],  # the first one counts
    [(b"transfer-encoding", b"chunked"), (b"content-length", b"3")],
    [(b"Connection", b"keep-alive, Close"), (b"content-length", b"0")],
    [(b"connection", b"upgrade")],
    [(b"X-Mixed-Case", b"Value With Spaces"), (b"x-empty", b"")],
]


@pytest.mark.parametrize("headers", HEADS)
@pytest.mark.parametrize("status", [200, 204, 304, 429])
@pytest.mark.parametrize("method", ["POST", "HEAD"])
@pytest.mark.parametrize("keep_alive", [True, False])
async def test_the_head_and_state_are_uvicorns(
    headers: list[tuple[bytes, bytes]], status: int, method: str, keep_alive: bool
) -> None:
    theirs = _cycle(RequestResponseCycle, method, keep_alive)
    await theirs.send({"type": "http.response.start", "status": status, "headers": headers})
    ours = _cycle(_HeadWithBodyCycle, method, keep_alive)
    assert ours._head(status, headers) == theirs.transport.written
    assert _state(ours) == _state(theirs)


@pytest.mark.parametrize(
    "headers",
    [[(b"x-bad name", b"1")], [(b"x-a\nx-b", b"1")], [(b"x-a", b"1\r\nx-injected: 1")]],
)
async def test_a_header_uvicorn_refuses_is_refused(headers: list[tuple[bytes, bytes]]) -> None:
    theirs = _cycle(RequestResponseCycle, "POST", True)
    with pytest.raises(RuntimeError) as their_error:
        await theirs.send({"type": "http.response.start", "status": 200, "headers": headers})
    ours = _cycle(_HeadWithBodyCycle, "POST", True)
    with pytest.raises(RuntimeError) as our_error:
        ours._head(200, headers)
    assert str(our_error.value) == str(their_error.value)


@pytest.mark.parametrize("byte", range(256))
async def test_a_byte_is_refused_in_a_name_or_value_exactly_when_uvicorn_refuses_it(
    byte: int,
) -> None:
    for headers in ([(b"x-a" + bytes((byte,)), b"1")], [(b"x-a", b"1" + bytes((byte,)))]):
        theirs = _cycle(RequestResponseCycle, "POST", True)
        ours = _cycle(_HeadWithBodyCycle, "POST", True)
        their_error = our_error = ""
        try:
            await theirs.send({"type": "http.response.start", "status": 200, "headers": headers})
        except RuntimeError as exc:
            their_error = str(exc)
        try:
            ours._head(200, headers)
        except RuntimeError as exc:
            our_error = str(exc)
        assert our_error == their_error
