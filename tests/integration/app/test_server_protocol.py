"""The server protocol writes a response's head with its first body, on a real uvicorn
server and socket: what reaches the transport is recorded write by write."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from llmserver.app.server_protocol import HeadWithBodyProtocol

WRITES: list[bytes] = []


class _Recording:
    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        WRITES.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def recorded(base: type[HttpToolsProtocol]) -> type[HttpToolsProtocol]:
    class Recorded(base):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(_Recording(transport))  # type: ignore[arg-type]

    return Recorded


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"x-a", b"1")]
    head = {"type": "http.response.start", "status": 200, "headers": headers}
    if scope["path"] == "/late":
        await send(head)
        await asyncio.sleep(0.05)  # a stream whose first event takes time
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    if scope["path"] == "/burst":  # three events at once (an upstream's whole answer), one later
        await send(head)
        for part in (b"a", b"b", b"c"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"d", "more_body": True})
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    if scope["path"] == "/bad-header":  # a value that would split the head
        headers.append((b"x-b", b"1\r\nx-injected: 1"))
    headers.append((b"content-length", b"4"))
    await send(head)
    await send({"type": "http.response.body", "body": b"body"})


@pytest.fixture(params=[HeadWithBodyProtocol, HttpToolsProtocol], ids=["ours", "uvicorn's"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[int, type]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        port=port,
        http=recorded(request.param),
        log_config=None,
        lifespan="off",
        timeout_keep_alive=1,
        timeout_graceful_shutdown=2,  # a failed test's open connection cannot hang teardown
    )
    serving = uvicorn.Server(config)
    task = asyncio.create_task(serving.serve())
    while not serving.started:
        await asyncio.sleep(0.01)
    yield port, request.param
    serving.should_exit = True
    await task


async def exchange(port: int, request: bytes, end: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    WRITES.clear()
    writer.write(request)
    received = b""
    while not received.endswith(end):
        received += await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    return received


async def test_a_whole_answer_is_one_write(server: tuple[int, type]) -> None:
    port, protocol = server
    received = await exchange(port, b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n", b"body")
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert received.endswith(b"\r\n\r\nbody")
    if protocol is HeadWithBodyProtocol:
        assert [received] == WRITES
    else:  # the control: uvicorn's own protocol writes the head, then the body
        assert len(WRITES) == 2


async def test_a_late_body_finds_the_head_already_sent(server: tuple[int, type]) -> None:
    port, _ = server
    await exchange(port, b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n", b"0\r\n\r\n")
    assert WRITES[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert WRITES[0].endswith(b"\r\n\r\n")
    assert b"first" in WRITES[1]


async def test_the_first_event_goes_at_once_and_the_rest_of_its_turn_together(
    server: tuple[int, type],
) -> None:
    port, protocol = server
    received = await exchange(port, b"GET /burst HTTP/1.1\r\nHost: x\r\n\r\n", b"0\r\n\r\n")
    assert received.endswith(b"1\r\na\r\n1\r\nb\r\n1\r\nc\r\n1\r\nd\r\n0\r\n\r\n")
    if protocol is HeadWithBodyProtocol:
        # The head with the first event at once; the other two events of that turn together
        # at its end; the event of a later turn at the end of its own turn, not held for
        # the end of the body.
        assert len(WRITES) == 4
        assert WRITES[0].startswith(b"HTTP/1.1 200 OK\r\n")
        assert WRITES[0].endswith(b"\r\n\r\n1\r\na\r\n")
        assert WRITES[1:] == [b"1\r\nb\r\n1\r\nc\r\n", b"1\r\nd\r\n", b"0\r\n\r\n"]
    else:  # uvicorn's own: a write per message
        assert len(WRITES) == 6


async def test_a_head_request_still_gets_its_head(server: tuple[int, type]) -> None:
    port, _ = server
    received = await exchange(port, b"HEAD /json HTTP/1.1\r\nHost: x\r\n\r\n", b"\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length: 4" in received
    assert b"body" not in received


async def test_a_header_value_with_a_line_break_is_never_written(server: tuple[int, type]) -> None:
    port, _ = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    WRITES.clear()
    writer.write(b"GET /bad-header HTTP/1.1\r\nHost: x\r\n\r\n")
    received = await asyncio.wait_for(reader.read(), 5)  # the server closes the connection
    writer.close()
    assert received == b""
    assert not any(b"x-injected" in w for w in WRITES)


async def test_pipelined_requests_are_answered_in_order(server: tuple[int, type]) -> None:
    port, _ = server
    one = b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n"
    late = b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(one + late + one)
    received = b""
    try:
        while received.count(b"HTTP/1.1 200 OK") < 3 or not received.endswith(b"body"):
            received += await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()
    first, second, third = received.split(b"HTTP/1.1 200 OK")[1:]
    assert first.endswith(b"\r\n\r\nbody")
    assert second.endswith(b"5\r\nfirst\r\n0\r\n\r\n")
    assert third.endswith(b"\r\n\r\nbody")


async def test_an_idle_keep_alive_connection_is_closed_after_its_timeout(
    server: tuple[int, type],
) -> None:
    port, _ = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while not received.endswith(b"body"):
            received += await asyncio.wait_for(reader.read(65536), 5)
        # The answer armed the 1 s keep-alive timer: the server closes the idle connection.
        assert await asyncio.wait_for(reader.read(), 5) == b""
    finally:
        writer.close()
