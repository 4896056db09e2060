"""Chat completions through the whole ASGI app in this process, without a server or a socket:
the gateway's own cost per request, for callgrind or a stopwatch.

    python -m bench.in_process hit 2000            # microseconds per request
    OTEL=1 python -m bench.in_process hit 2000     # with tracing on, spans dropped unsent
    LIMITED=1 python -m bench.in_process hit 2000  # a key with every limit, in a team
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m bench.in_process hit 2000        # instructions: run twice with two counts,
                                                   # and the difference is the requests'

``hit`` repeats one prompt (after the first, hot-cache hits), ``miss`` sends a new one
each time, both to bench/apps.py's instant backend, on a fresh SQLite database in a
temporary folder.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.apps import SPEC, InstantBackends
from bench.gateway_bench import LIMITED, LIMITS
from bench.support import issue_key, migrate, server_env

SECRET = "bench-server-secret-" + "b" * 32


def _dropping_tracer(endpoint: str) -> Any:
    """A tracer whose exporter drops every batch: tracing's cost on the request path alone."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    from llmserver.adapters.otel_tracer import OtelTracer

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    return OtelTracer(endpoint, service_name="bench", log_bodies=False, exporter=Drop())


class _Lifespan:
    """The app's lifespan, as a server drives it: startup, then shutdown, one task."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._answers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Future[None] | None = None

    async def _step(self, kind: str) -> None:
        await self._messages.put({"type": f"lifespan.{kind}"})
        answer = await self._answers.get()
        if answer["type"] != f"lifespan.{kind}.complete":
            raise RuntimeError(f"lifespan {kind}: {answer}")

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._task = asyncio.ensure_future(self._app(scope, self._messages.get, self._answers.put))
        await self._step("startup")

    async def shutdown(self) -> None:
        await self._step("shutdown")
        assert self._task is not None
        await self._task


async def _request(app: Any, key: str, body: bytes) -> int:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"authorization", b"Bearer " + key.encode()),
            (b"content-length", b"%d" % len(body)),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    await app(scope, receive, send)
    status: int = sent[0]["status"]
    return status


async def run(which: str, count: int) -> float:
    """Seconds per request over ``count`` requests after 50 uncounted ones."""
    from llmserver.app import factory
    from llmserver.app.composition import Overrides
    from llmserver.app.settings import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        # No work on a timer while measuring (flushes, the key cache's refresh): under
        # callgrind, time runs 50 times slower, and timed work would count with the requests.
        # Unflushed, every request's log row waits in the queue: it must hold them all, or
        # the requests past its size are refused (back-pressure) and time as fast ones.
        env = server_env(
            server_secret=SECRET,
            database_url=db,
            profile="none",
            log_level="WARNING",
            state_flush_ms="600000",
            log_flush_ms="600000",
            log_queue_max=str(max(50_000, count + 1_000)),
            key_cache_ttl_s="3600",
        )
        if os.environ.get("OTEL"):
            env["LLMSERVER_OTEL_ENDPOINT"] = "http://127.0.0.1:9/unused"
        migrate(env)
        if os.environ.get("LIMITED"):  # the gateway bench's cache-hit key, in its team
            key = await issue_key(db, SECRET, team=LIMITED, **LIMITED)
        else:
            key = await issue_key(db, SECRET, **LIMITS)
        settings = load_settings(env, root=Path(tmp))
        endpoint = settings.otel_endpoint
        tracer = None if endpoint is None else _dropping_tracer(endpoint)
        overrides = Overrides(backends=InstantBackends(), specs=[SPEC], tracer=tracer)
        app = factory.asgi_app(settings, overrides)
        lifespan = _Lifespan(app)
        await lifespan.startup()
        try:

            def body(n: int) -> bytes:
                content = "Say hello" if which == "hit" else f"Say hello, call {n}"
                return (
                    b'{"model":"instant","max_tokens":20,"temperature":0,'
                    b'"messages":[{"role":"user","content":"%s"}]}' % content.encode()
                )

            for n in range(50):
                assert await _request(app, key, body(-n - 1)) == 200
            started = time.perf_counter()
            answered = [await _request(app, key, body(n)) for n in range(count)]
            seconds = (time.perf_counter() - started) / count
            refused = len(answered) - answered.count(200)
            if refused:
                raise RuntimeError(f"{refused} of {count} timed requests were not answered 200")
            return seconds
        finally:
            await lifespan.shutdown()


def main(argv: list[str]) -> None:
    which, count = argv[0], int(argv[1])
    seconds = asyncio.run(run(which, count))
    print(f"{which}: {seconds * 1e6:.1f} µs per request over {count}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
