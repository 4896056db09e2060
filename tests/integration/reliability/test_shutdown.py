"""Graceful shutdown: SIGTERM while streams are running lets them finish, flushes the
request log and exits 0."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from integration.reliability.faultkit import (
    SOAK,
    Upstream,
    bearer,
    chat_body,
    http_models_file,
    start_servers,
)
from livesupport import TEST_SECRET, free_port, issue_keys, migrate, server_env

pytestmark = pytest.mark.slow

STREAMS = 60 if SOAK else 20
TOKENS = 40  # two seconds of dripping per stream
DRAIN_S = 30


async def _stream(client: httpx.AsyncClient, key: str, started: asyncio.Event) -> list[str]:
    lines: list[str] = []
    body = chat_body(model="drip", max_tokens=TOKENS, stream=True)
    async with client.stream(
        "POST", "/v1/chat/completions", headers=bearer(key), json=body
    ) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line:
                lines.append(line)
                started.set()
    return lines


@dataclass
class ShutdownRun:
    results: list[list[str] | BaseException]
    exit_code: int
    drain_seconds: float
    rows: list[tuple[int, int]]
    log: str


async def _sigterm_during_streams(upstream: Upstream, root: Path) -> ShutdownRun:
    database = root / "llmserver.db"
    database_url = f"sqlite+aiosqlite:///{database}"
    env = server_env(
        database_url,
        root / "no-demo-model",
        LLMSERVER_PROFILE="none",
        LLMSERVER_MODELS_FILE=str(http_models_file(root / "models.toml", upstream)),
        LLMSERVER_SHUTDOWN_DRAIN_S=str(DRAIN_S),
        # Rows stay queued until shutdown unless the batcher is flushed at exit.
        LLMSERVER_LOG_FLUSH_MS="60000",
    )
    migrate(database_url)
    keys = await issue_keys(database_url, TEST_SECRET)
    port = free_port()
    [process] = await asyncio.to_thread(start_servers, [env], [root / "server.log"], [port])
    try:
        limits = httpx.Limits(max_connections=STREAMS)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits
        ) as client:
            started = [asyncio.Event() for _ in range(STREAMS)]
            streams = [asyncio.create_task(_stream(client, keys.user, e)) for e in started]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 30)
            process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            results = await asyncio.gather(*streams, return_exceptions=True)
        exit_code = await asyncio.to_thread(process.wait, DRAIN_S + 30)
        took = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT status, stream FROM request_logs").fetchall()
    print(f"\nshutdown: {STREAMS} streams after SIGTERM, exit {exit_code} in {took:.1f}s")
    return ShutdownRun(list(results), exit_code, took, rows, (root / "server.log").read_text())


@pytest.fixture(scope="module")
def shutdown_run(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> ShutdownRun:
    return asyncio.run(_sigterm_during_streams(upstream, tmp_path_factory.mktemp("shutdown")))


def test_sigterm_lets_every_stream_finish(shutdown_run: ShutdownRun) -> None:
    failures = [r for r in shutdown_run.results if isinstance(r, BaseException)]
    assert not failures, failures[:3]
    completed = [lines for lines in shutdown_run.results if isinstance(lines, list)]
    assert len(completed) == STREAMS
    assert all(lines[-1] == "data: [DONE]" for lines in completed)
    assert all('"finish_reason":"length"' in "".join(lines) for lines in completed)
    assert shutdown_run.drain_seconds < DRAIN_S + 30


def test_sigterm_flushes_every_request_log_row(shutdown_run: ShutdownRun) -> None:
    assert shutdown_run.rows == [(200, 1)] * STREAMS
    assert "request_logs_unwritten_at_shutdown" not in shutdown_run.log


def test_sigterm_exits_zero(shutdown_run: ShutdownRun) -> None:
    assert shutdown_run.exit_code == 0
