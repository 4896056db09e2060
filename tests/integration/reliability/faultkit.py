"""Throwaway Redis and PostgreSQL servers the fault tests may stop and start at will,
plus small helpers to drive live servers with concurrent requests.

The machine's shared Redis and PostgreSQL are never stopped: each fault test runs its own
``redis-server`` / PostgreSQL cluster on a free loopback port in a temporary directory.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from livesupport import free_port, spawn_server, stop_server

MODEL = "demo-tiny-llama"
SOAK = os.environ.get("LLMSERVER_SOAK") == "1"
"""``make soak`` sets LLMSERVER_SOAK=1 for the heavier sizes."""


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    return Path(found[-1]).parent


class PostgresCluster:
    """A private PostgreSQL cluster (trust auth, fsync off) that can be stopped and started.

    initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` user.
    """

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        # Not under pytest's tmp_path: that is private to root and the cluster's owner
        # must be able to write here.
        self.root = Path(tempfile.mkdtemp(prefix="llmserver-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._prefix: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            self._prefix = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self._prefix, *args], check=True, capture_output=True, timeout=60)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "postgres.log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Tally:
    """Every answer a load run got: status codes, request ids and reported usage."""

    statuses: list[int] = field(default_factory=list)
    request_ids: dict[int, list[str]] = field(default_factory=dict)
    usage_tokens: int = 0
    retry_after_missing: int = 0

    def add(self, response: httpx.Response) -> None:
        self.statuses.append(response.status_code)
        self.request_ids.setdefault(response.status_code, []).append(
            response.headers.get("x-request-id", "")
        )
        if response.status_code == 200:
            self.usage_tokens += response.json()["usage"]["total_tokens"]
        elif response.status_code in (429, 503) and "retry-after" not in response.headers:
            self.retry_after_missing += 1

    def count(self, status: int) -> int:
        return self.statuses.count(status)

    def server_errors(self, allowed: Sequence[int] = ()) -> list[int]:
        return [s for s in self.statuses if s >= 500 and s not in allowed]


def chat_body(prompt: str | None = None, max_tokens: int = 4, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt or f"hello {uuid.uuid4().hex}"}],
        "max_tokens": max_tokens,
        **extra,
    }


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def create_key(base_url: str, admin_key: str, name: str, **limits: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            base_url + "/admin/keys", headers=bearer(admin_key), json={"name": name, **limits}
        )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def usage_of(base_url: str, admin_key: str, key_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.get(
            base_url + "/admin/usage", headers=bearer(admin_key), params={"key_id": key_id}
        )
    assert response.status_code == 200, response.text
    rows = response.json()["data"]
    assert len(rows) == 1, rows
    row: dict[str, Any] = rows[0]
    return row


async def wait_until(predicate: Any, timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll an async predicate until it holds; False when it never did."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(interval_s)
    return False


def metric_value(text: str, name: str, labels: str = "") -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def fetch(database_url: str, sql: str, *args: Any) -> list[Any]:
    """Rows of a query, straight from PostgreSQL (not through the app)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    plain = make_url(database_url).set(drivername="postgresql")
    conn = await asyncpg.connect(plain.render_as_string(hide_password=False), timeout=5)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def count_rows(database_url: str, sql: str, *args: Any) -> int:
    rows = await fetch(database_url, sql, *args)
    return int(rows[0][0] or 0)


def start_servers(
    envs: Sequence[dict[str, str]],
    logs: Sequence[Path],
    ports: Sequence[int],
    args: Sequence[str] = (),
) -> list[subprocess.Popen[bytes]]:
    """Start several servers at once (each with ``args`` added to ``serve``) and wait until
    every one is ready.

    A busy two-core machine loading several models at once needs more than the single
    server's start-up allowance; on failure every process is stopped and the failing
    server's last log lines are shown.
    """
    processes = [
        spawn_server(env, log, port, args) for env, log, port in zip(envs, logs, ports, strict=True)
    ]
    pending = dict(enumerate(ports))
    deadline = time.monotonic() + 300
    try:
        while pending:
            if time.monotonic() > deadline:
                index = next(iter(pending))
                raise RuntimeError(f"server not ready within 300 s:\n{tail(logs[index])}")
            for index, port in list(pending.items()):
                if processes[index].poll() is not None:
                    raise RuntimeError(f"server exited early:\n{tail(logs[index])}")
                try:
                    ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
                except httpx.TransportError:
                    continue
                if ready.status_code == 200:
                    del pending[index]
            time.sleep(0.2)
    except BaseException:
        for process in processes:
            stop_server(process)
        raise
    return processes


def tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class Upstream:
    """An OpenAI-compatible upstream on loopback, in its own thread, for http models.

    The upstream model name picks the behaviour: ``fast`` answers at once, ``hang``
    never answers (until the client gives up), ``drip`` sends one token every
    ``drip_interval_s`` up to ``max_tokens``, ``malformed`` sends three and then a chunk
    nested too deeply for a JSON parser's stack. It records what the gateway did to it:
    how many drip tokens were sent, how many connections are still open, and the most
    that were open at once (``most_open``, which a test may reset).
    """

    def __init__(self, drip_interval_s: float = 0.05) -> None:
        self.drip_interval_s = drip_interval_s
        self.port = 0
        self.open_connections = 0
        self.most_open = 0
        self.drip_tokens_sent = 0
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        self.most_open = max(self.most_open, self.open_connections)
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            lines = head.strip().split("\r\n")[1:]
            headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in lines)}
            body = json.loads(await reader.readexactly(int(headers.get("content-length", "0"))))
            self.requests += 1
            behaviour = body["model"]
            if behaviour == "hang":
                await reader.read()  # returns when the gateway closes the connection
                return
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
            )
            count = int(body["max_tokens"]) if behaviour == "drip" else 3
            for _ in range(count):
                writer.write(_sse({"choices": [{"index": 0, "delta": {"content": " tok"}}]}))
                await writer.drain()
                if behaviour == "drip":
                    self.drip_tokens_sent += 1
                    await asyncio.sleep(self.drip_interval_s)
            if behaviour == "malformed":
                writer.write(b'data: {"choices": [], "x": ' + b"[" * 100_000 + b"]" * 100_000)
                writer.write(b"}\n\n")
            usage = {"prompt_tokens": 5, "completion_tokens": count, "total_tokens": count + 5}
            finish = {"index": 0, "delta": {}, "finish_reason": "length"}
            writer.write(_sse({"choices": [finish], "usage": usage}) + b"data: [DONE]\n\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the gateway went away: that is what the drip behaviour is for
        finally:
            self.open_connections -= 1
            writer.close()


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def http_models_file(path: Path, upstream: Upstream) -> Path:
    """A models file with one http model per upstream behaviour."""
    entries = [
        f'[[models]]\nid = "{name}"\nbackend = "http"\nsource = "{upstream.url}"\n'
        f'upstream_model = "{name}"\ncontext_length = 4096\n'
        for name in ("fast", "hang", "drip", "malformed")
    ]
    path.write_text("\n".join(entries))
    return path


@dataclass(frozen=True)
class Answer:
    sent_at: float
    status: int
    headers: httpx.Headers
    answered_at: float = 0.0
    tokens: int = 0
    """The usage the answer reported (prompt + completion), 0 unless it is a 200."""


async def keep_loading(
    client: httpx.AsyncClient, key: str, stop: asyncio.Event, workers: int = 4
) -> list[Answer]:
    """Send small completions from ``workers`` loops until ``stop`` is set."""
    answers: list[Answer] = []

    async def worker() -> None:
        while not stop.is_set():
            sent_at = time.monotonic()
            try:
                response = await client.post(
                    "/v1/chat/completions", headers=bearer(key), json=chat_body(model="fast")
                )
            except httpx.TransportError:
                answers.append(Answer(sent_at, 0, httpx.Headers(), time.monotonic()))
            else:
                ok = response.status_code == 200
                tokens = response.json()["usage"]["total_tokens"] if ok else 0
                answers.append(
                    Answer(
                        sent_at, response.status_code, response.headers, time.monotonic(), tokens
                    )
                )
            await asyncio.sleep(0.02)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return answers
