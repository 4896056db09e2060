"""The upstream client against real sockets on loopback: bodies framed every way HTTP/1.1
allows, keep-alive and its limits, a slow reader, the pool's cap, proxies (plain and a
CONNECT tunnel to a TLS upstream) and an answer that is not HTTP."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from llmserver.adapters.inference import http_upstream_client
from llmserver.adapters.inference.http_upstream_client import Timeouts, UpstreamClient
from llmserver.adapters.inference.http_upstream_connection import (
    ConnectFailed,
    Dropped,
    ReadTimedOut,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
FAST = Timeouts(connect_s=2.0, read_s=2.0)
JSON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


class Server:
    """A loopback server that reads each request whole and answers with ``handler``;
    it counts connections and keeps every request head it read."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.heads: list[bytes] = []
        self.port = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = Server(handler)
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0, ssl=tls)
    server.port = listening.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listening.close()


def answer(body: bytes, extra: bytes = b"") -> Handler:
    async def handle(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(JSON_HEAD + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()

    return handle


async def call(client: UpstreamClient, port: int, scheme: str = "http") -> tuple[int, bytes]:
    response = await client.upstream(f"{scheme}://127.0.0.1:{port}/v1").send(
        b"POST", "/v1/chat/completions", b"{}", b"Content-Type: application/json\r\n", FAST
    )
    try:
        return response.status, await response.read()
    finally:
        response.close()


async def test_sequential_calls_reuse_one_connection() -> None:
    async with serving(answer(b'{"ok": 1}')) as server, UpstreamClient() as client:
        for _ in range(5):
            assert await call(client, server.port) == (200, b'{"ok": 1}')
    assert server.connections == 1
    assert server.heads[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:")


async def test_chunked_and_eof_framed_bodies() -> None:
    async def chunked(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            JSON_HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
        )
        await writer.drain()

    async def until_eof(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(JSON_HEAD + b"\r\nall of it, ended by the close")
        await writer.drain()
        writer.close()

    async with UpstreamClient() as client:
        async with serving(chunked) as server:
            assert await call(client, server.port) == (200, b"abcde")
            assert await call(client, server.port) == (200, b"abcde")
            assert server.connections == 1
        async with serving(until_eof) as server:
            assert await call(client, server.port) == (200, b"all of it, ended by the close")
            assert await call(client, server.port) == (200, b"all of it, ended by the close")
            assert server.connections == 2  # such a body ends its connection


async def test_connection_close_and_idle_expiry_open_a_new_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with UpstreamClient() as client:
        async with serving(answer(b"x", b"Connection: close\r\n")) as server:
            await call(client, server.port)
            await call(client, server.port)
            assert server.connections == 2
        monkeypatch.setattr(http_upstream_client, "KEEPALIVE_S", 0.05)
        async with serving(answer(b"x")) as server:
            await call(client, server.port)
            await asyncio.sleep(0.1)
            await call(client, server.port)
            assert server.connections == 2


async def test_a_connection_the_upstream_closed_while_idle_is_not_used() -> None:
    async def answer_then_hang_up(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answer(b"x")(_, writer)
        writer.close()  # keep-alive said nothing against it, but the upstream is gone

    async with serving(answer_then_hang_up) as server, UpstreamClient() as client:
        for _ in range(3):
            await call(client, server.port)
            await asyncio.sleep(0.05)  # the hang-up reaches us while the connection idles
    assert server.connections == 3


async def test_a_slow_reader_gets_a_large_body_whole() -> None:
    """Reading stops past ``PAUSE_BYTES`` unread and starts again as the reader catches up:
    all 4 MiB arrive in order."""
    body = bytes(range(256)) * (16 * 1024)

    async def large(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(JSON_HEAD + b"Content-Length: %d\r\n\r\n" % len(body))
        for start in range(0, len(body), 65536):
            writer.write(body[start : start + 65536])
            await writer.drain()

    async with serving(large) as server, UpstreamClient() as client:
        response = await client.upstream(f"http://127.0.0.1:{server.port}").send(
            b"POST", "/", b"", b"", FAST
        )
        await asyncio.sleep(0.3)  # the reader lags: far more than PAUSE_BYTES arrive meanwhile
        received = bytearray()
        while (chunk := await response.next_chunk()) is not None:
            received += chunk
        response.close()
    assert bytes(received) == body


async def test_the_pool_cap_queues_then_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_upstream_client, "MAX_CONNECTIONS_PER_UPSTREAM", 1)
    release = asyncio.Event()

    async def held(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        await answer(b"x")(_, writer)

    async with serving(held) as server, UpstreamClient() as client:
        first = asyncio.create_task(call(client, server.port))
        await asyncio.sleep(0.05)
        upstream = client.upstream(f"http://127.0.0.1:{server.port}")
        with pytest.raises(ReadTimedOut, match="all 1 connections busy"):
            await upstream.send(b"POST", "/", b"", b"", Timeouts(connect_s=1, read_s=0.1))
        second = asyncio.create_task(call(client, server.port))
        release.set()
        assert await first == (200, b"x")
        assert await second == (200, b"x")
    assert server.connections == 1


async def test_not_http_and_refused_connections() -> None:
    async def ssh(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()

    async with serving(ssh) as server, UpstreamClient() as client:
        with pytest.raises(Dropped, match="not HTTP"):
            await call(client, server.port)
        port = server.port
    async with UpstreamClient() as client:
        with pytest.raises(ConnectFailed, match="ConnectionRefusedError"):
            await call(client, port)


async def _proxy(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log: list[bytes]
) -> None:
    """An HTTP proxy: CONNECT opens a tunnel; any other request is forwarded whole."""
    head = await reader.readuntil(b"\r\n\r\n")
    log.append(head)
    method, target, _ = head.split(b" ", 2)
    authority = target.split(b"/")[2] if method != b"CONNECT" else target
    host, port = authority.decode().rsplit(":", 1)
    up_reader, up_writer = await asyncio.open_connection(host, int(port))
    if method == b"CONNECT":
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
    else:
        up_writer.write(head)

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while data := await src.read(65536):
            dst.write(data)
        dst.close()

    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_http_and_https_through_the_environments_proxy(
    monkeypatch: pytest.MonkeyPatch, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    client_tls = ssl.create_default_context(cafile=str(cert))
    log: list[bytes] = []
    proxy = await asyncio.start_server(lambda r, w: _proxy(r, w, log), "127.0.0.1", 0)
    proxy_port = proxy.sockets[0].getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://user:p%40ss@127.0.0.1:{proxy_port}")
    monkeypatch.setenv("HTTPS_PROXY", f"http://user:p%40ss@127.0.0.1:{proxy_port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    try:
        async with serving(answer(b"plain")) as plain, UpstreamClient() as client:
            assert await call(client, plain.port) == (200, b"plain")
        assert log[-1].startswith(b"POST http://127.0.0.1:%d/v1/chat/completions " % plain.port)
        assert b"Proxy-Authorization: Basic dXNlcjpwQHNz\r\n" in log[-1]  # user:p@ss
        async with (
            serving(answer(b"secret"), server_tls) as tls,
            UpstreamClient(client_tls) as client,
        ):
            assert await call(client, tls.port, "https") == (200, b"secret")
        assert log[-1].startswith(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\n" % tls.port)
        assert b"Proxy-Authorization: Basic dXNlcjpwQHNz\r\n" in log[-1]
        assert tls.heads[0].startswith(b"POST /v1/chat/completions ")  # the path, in the tunnel
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        seen = len(log)
        async with serving(answer(b"direct")) as direct, UpstreamClient() as client:
            assert await call(client, direct.port) == (200, b"direct")
        assert len(log) == seen
    finally:
        proxy.close()


@pytest.mark.parametrize("proxy", ["https://proxy.example:3128", "socks5://proxy.example:1080"])
def test_a_proxy_we_cannot_speak_is_refused_when_the_model_is_created(
    monkeypatch: pytest.MonkeyPatch, proxy: str
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(ValueError, match="only http:// proxies are supported"):
        http_upstream_client.env_proxy("https://api.example.com/v1")
