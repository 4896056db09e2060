"""`python -m bench.upstream_clients`: what one upstream call costs the HTTP backend's
client, per client library, against an instant OpenAI-compatible upstream on loopback.

The upstream runs in its own process (so its CPU is not counted) and answers at once,
keep-alive, like vLLM: a JSON body with a Content-Length, or a short chunked SSE stream
(four text chunks, a finish chunk, a usage chunk, ``[DONE]``, and the body's end a
moment later). Each client does the whole call as the backend does: encode the request,
POST it over a pooled keep-alive connection, read the answer and decode every chunk with
msgspec. Reported per client and answer kind: the median and p99 latency of sequential
calls, the client process's CPU per call over those calls, calls per second with 32 calls
in flight at once, and the connections the client opened for all of them (keep-alive:
about one per call in flight, not one per call).

``HttpBackend`` rows run the backend itself (whatever client it uses now); the others are
the bare libraries, to choose between. Options: ``--calls N`` (sequential calls per row),
``--loop asyncio`` (default uvloop, as uvicorn runs the server).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
import urllib.request
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, cast

import msgspec

from llmserver.adapters.inference.http_upstream_answers import parse_answer

CONCURRENCY = 32
PIECES = ("Hello", ", wor", "ld", "!")
Call = Callable[[bool], Awaitable[None]]
"""One whole upstream call; the argument says whether it streams."""


# -- the upstream --------------------------------------------------------------------------


def _answers() -> tuple[bytes, bytes]:
    choice = {"index": 0, "finish_reason": "length", "message": {"content": "".join(PIECES)}}
    usage = {"prompt_tokens": 7, "completion_tokens": len(PIECES)}
    whole = msgspec.json.encode({"id": "x", "choices": [choice], "usage": usage})
    json_answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(whole), whole)
    )
    events: list[dict[str, Any]] = [
        {"id": "x", "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}
        for p in PIECES
    ]
    events.append({"id": "x", "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
    events.append({"id": "x", "choices": [], "usage": usage})
    datas = [b"data: " + msgspec.json.encode(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]
    sse = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    sse += b"".join(b"%x\r\n%s\r\n" % (len(d), d) for d in datas)
    return json_answer, sse


class _Upstream(asyncio.Protocol):
    """Keep-alive HTTP/1.1, Content-Length request bodies only: enough for the clients here."""

    JSON, SSE = _answers()
    opened = 0

    def __init__(self) -> None:
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        _Upstream.opened += 1
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            if head.startswith(b"get /opened"):  # how many connections clients opened
                count = b"%d" % _Upstream.opened
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(count))
                self.transport.write(count)
                continue
            if b'"stream":true' not in body:
                self.transport.write(self.JSON)
                continue
            # The end of the chunked body a moment later, in a write of its own, as uvicorn
            # (vLLM's server) ends a stream: whether a client keeps the connection depends
            # on its waiting for it.
            self.transport.write(self.SSE)
            asyncio.get_running_loop().call_soon(self.transport.write, b"0\r\n\r\n")


def _serve(port: multiprocessing.SimpleQueue[int], loop_kind: str) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Upstream, "127.0.0.1", 0)
        port.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    _run(main(), loop_kind)


# -- the clients ---------------------------------------------------------------------------

BODY: dict[str, Any] = {
    "model": "m",
    "messages": [{"role": "user", "content": "Hi"}],
    "max_tokens": 16,
    "temperature": 0.0,
    "top_p": 1.0,
}
HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}


def _body(stream: bool) -> bytes:
    return msgspec.json.encode({**BODY, "stream": stream})


def _opened(url: str) -> int:
    with urllib.request.urlopen(url + "/opened") as answer:
        return int(answer.read())


def _parse_lines(lines: list[bytes]) -> int:
    """Decode every ``data:`` line as the backend does; the number of chunks."""
    n = 0
    for line in lines:
        if line.startswith(b"data: ") and line != b"data: [DONE]":
            parse_answer(line[6:], "m", "stream chunk")
            n += 1
    return n


async def _backend(url: str, stack: AsyncExitStack) -> Call:
    from llmserver.adapters.inference.http_backend import HttpBackend
    from llmserver.adapters.inference.manager import MultiModelManager
    from llmserver.domain.inference import ChatMessage, GenerationParams, Prompt
    from llmserver.domain.registry import BackendKind, ModelSpec

    spec = ModelSpec(id="m", backend=BackendKind.HTTP, source=url)
    manager = MultiModelManager([spec])
    await manager.load_all()
    stack.push_async_callback(manager.close)
    backend = manager.backend("m")
    assert isinstance(backend, HttpBackend)
    prompt = Prompt(messages=(ChatMessage("user", "Hi"),))
    params = GenerationParams(max_tokens=16, temperature=0.0)

    async def call(stream: bool) -> None:
        if stream:
            async for _ in backend.stream(prompt, params):
                pass
        else:
            await backend.generate(prompt, params)

    return call


async def _httpx(url: str, stack: AsyncExitStack) -> Call:
    import httpx

    client = await stack.enter_async_context(httpx.AsyncClient(headers=HEADERS))
    timeout = httpx.Timeout(300.0, connect=5.0)
    target = url + "/v1/chat/completions"

    async def call(stream: bool) -> None:
        request = client.build_request("POST", target, content=_body(stream), timeout=timeout)
        response = await client.send(request, stream=True)
        try:
            if stream:
                _parse_lines([line.encode() async for line in response.aiter_lines()])
            else:
                parse_answer(await response.aread(), "m", "completion")
        finally:
            await response.aclose()

    return call


async def _httpcore(url: str, stack: AsyncExitStack) -> Call:
    import httpcore

    pool = await stack.enter_async_context(httpcore.AsyncConnectionPool(max_connections=100))
    headers = [(k.encode(), v.encode()) for k, v in HEADERS.items()]
    target = url + "/v1/chat/completions"
    extensions = {"timeout": {"connect": 5.0, "read": 300.0, "write": 300.0, "pool": 300.0}}

    async def call(stream: bool) -> None:
        async with pool.stream(
            "POST", target, headers=headers, content=_body(stream), extensions=extensions
        ) as response:
            if stream:
                raw = b"".join([part async for part in response.aiter_stream()])
                _parse_lines(raw.split(b"\n"))
            else:
                parse_answer(await response.aread(), "m", "completion")

    return call


async def _aiohttp(url: str, stack: AsyncExitStack) -> Call:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=100, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(sock_connect=5.0, sock_read=300.0)
    session = await stack.enter_async_context(
        aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            headers=HEADERS,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )
    )
    target = url + "/v1/chat/completions"

    async def call(stream: bool) -> None:
        async with session.post(target, data=_body(stream), allow_redirects=False) as response:
            if stream:
                _parse_lines([line.rstrip(b"\r\n") async for line in response.content])
            else:
                parse_answer(await response.read(), "m", "completion")

    return call


CLIENTS: dict[str, Callable[[str, AsyncExitStack], Awaitable[Call]]] = {
    "HttpBackend (as it is)": _backend,
    "httpx AsyncClient": _httpx,
    "httpcore pool": _httpcore,
    "aiohttp session": _aiohttp,
}


# -- measuring -----------------------------------------------------------------------------


async def _measure(call: Call, stream: bool, calls: int) -> tuple[float, float, float, float]:
    """Median and p99 latency (ms) and CPU per call (ms) of sequential calls, calls/s with
    CONCURRENCY in flight."""
    for _ in range(min(200, calls)):
        await call(stream)
    latencies = []
    cpu = time.process_time()
    for _ in range(calls):
        started = time.perf_counter()
        await call(stream)
        latencies.append(time.perf_counter() - started)
    cpu_per_call = (time.process_time() - cpu) / calls
    latencies.sort()
    left = [calls]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            await call(stream)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    rate = calls / (time.perf_counter() - started)
    p99 = latencies[int(len(latencies) * 0.99)]
    return statistics.median(latencies) * 1e3, p99 * 1e3, cpu_per_call * 1e3, rate


async def _bench(url: str, calls: int, only: list[str]) -> None:
    heads = ("median ms", "p99 ms", "CPU ms", f"calls/s@{CONCURRENCY}", "conns")
    print(f"{'client':<24} {'answer':<6} " + " ".join(f"{h:>10}" for h in heads))
    for name, make in CLIENTS.items():
        if only and not any(o.lower() in name.lower() for o in only):
            continue
        async with AsyncExitStack() as stack:
            call = await make(url, stack)
            for stream in (False, True):
                opened = _opened(url)
                median, p99, cpu, rate = await _measure(call, stream, calls)
                conns = _opened(url) - opened  # a keep-alive pool: a few, not one a call
                kind = "SSE" if stream else "JSON"
                print(
                    f"{name:<24} {kind:<6} {median:>10.3f} {p99:>10.3f} {cpu:>10.3f} "
                    f"{rate:>10.0f} {conns:>10}",
                    flush=True,
                )


def _run(main: Awaitable[None], loop_kind: str) -> None:
    if loop_kind == "uvloop":
        import uvloop

        uvloop.run(main)  # type: ignore[arg-type]
    else:
        asyncio.run(main)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("only", nargs="*", help="run only the clients whose names contain these")
    args = parser.parse_args(argv)
    spawn = multiprocessing.get_context("spawn")
    ports: multiprocessing.SimpleQueue[int] = spawn.SimpleQueue()
    upstream = spawn.Process(target=_serve, args=(ports, args.loop), daemon=True)
    upstream.start()
    try:
        url = f"http://127.0.0.1:{ports.get()}"
        print(f"upstream {url}, {args.calls} calls a row, {args.loop} loop")
        _run(_bench(url, args.calls, args.only), args.loop)
    finally:
        upstream.terminate()


if __name__ == "__main__":
    main()
