"""Driving the HTTP benchmarks' servers: starting them, wrk at 32 connections, and one
client's sequential calls (latency without queueing: what a gateway adds to each call)."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from bench.support import ROOT

LUA = Path(__file__).resolve().parent / "wrk_chat.lua"
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
DURATION_S = int(os.environ.get("BENCH_DURATION_S", "10"))

# The first text of an answer: a JSON body's message or a stream's first non-empty delta
# (a stream's role chunk carries an empty content). Spaces: LiteLLM's JSON has none, but
# an upstream's may.
_FIRST_TEXT = re.compile(rb'"content":\s*"[^"]')


def spawn(argv: Sequence[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` in the repository root, its output to ``log``; see ``ready``."""
    with log.open("wb") as out:
        return subprocess.Popen(
            list(argv), cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT
        )


def ready(
    name: str,
    proc: subprocess.Popen[bytes],
    port: int,
    log: Path,
    *,
    health: str = "/healthz",
    timeout_s: float = 60,
) -> subprocess.Popen[bytes]:
    """``proc`` once ``health`` on ``port`` answers (any status); stopped if it never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} server died:\n{log.read_text()[-4000:]}")
        try:
            httpx.get(f"http://127.0.0.1:{port}{health}", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.2)
    stop([proc])
    raise RuntimeError(
        f"{name} server did not start in {timeout_s:.0f} s:\n{log.read_text()[-4000:]}"
    )


def launch(
    name: str, argv: Sequence[str], port: int, env: Mapping[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """Start ``argv`` and wait until it serves on ``port``."""
    return ready(name, spawn(argv, env, log), port, log)


def start(which: str, port: int, env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """One of bench/apps.py's servers."""
    argv = [sys.executable, "-m", "bench.apps", which, "--port", str(port)]
    return launch(which, argv, port, env, log)


def stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _busy_jiffies() -> tuple[int, int]:
    """The machine's CPU time so far, busy and in all (``/proc/stat``, in clock ticks)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:8]]
    idle = fields[3] + fields[4]  # idle and iowait
    return sum(fields) - idle, sum(fields)


def settle(*, busy_below: float = 0.1, max_wait_s: float = 30.0) -> None:
    """Wait until the machine has been idle for a second: less than ``busy_below`` of its
    CPU time busy. A server keeps working after a scenario (LiteLLM's proxy kept most of a
    core busy for seconds after its run), and that work fell on whatever was measured next:
    the gateway's ``no-cache`` throughput over the upstream's read 0.32-0.34 in runs where
    it did and 0.48 in one where it did not. Gives up after ``max_wait_s``, saying so."""
    if not os.path.exists("/proc/stat"):
        return
    deadline = time.monotonic() + max_wait_s
    while True:
        busy0, total0 = _busy_jiffies()
        time.sleep(1.0)
        busy1, total1 = _busy_jiffies()
        share = (busy1 - busy0) / max(total1 - total0, 1)
        if share < busy_below:
            return
        if time.monotonic() > deadline:
            print(f"  .. the machine stayed busy ({share:.0%} of its CPU): measuring anyway")
            return


def wrk(
    port: int,
    key: str,
    *,
    unique: bool,
    no_cache: bool = False,
    duration: int = DURATION_S,
) -> dict[str, float]:
    """wrk's numbers for chat completions (``wrk_chat.lua``), on a settled machine; failed
    requests raise."""
    settle()
    env = {
        **os.environ,
        "BENCH_KEY": key,
        "BENCH_UNIQUE": "1" if unique else "0",
        "BENCH_NO_CACHE": "1" if no_cache else "0",
    }
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{CONNECTIONS}",
            f"-d{duration}s",
            "--timeout",
            "30s",
            "-s",
            str(LUA),
            f"http://127.0.0.1:{port}",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(row for row in out.splitlines() if row.startswith("WRK_JSON "))
    result: dict[str, float] = json.loads(line.removeprefix("WRK_JSON "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    if result["non2xx"] or result["socket_errors"]:
        raise RuntimeError(f"benchmark requests failed: {result}")
    return result


def describe(r: Mapping[str, float]) -> str:
    return f"{r['rps']:.0f} req/s, p50 {r['p50_us'] / 1000:.2f} ms, p99 {r['p99_us'] / 1000:.2f} ms"


class SequentialClient:
    """One keep-alive connection making one chat call at a time, each a new prompt, with
    ``Cache-Control: no-cache`` when asked. http.client, not httpx: its own cost per call
    is a few microseconds, and the same on every server compared."""

    def __init__(self, port: int, key: str, *, no_cache: bool) -> None:
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self._conn.connect()
        assert self._conn.sock is not None
        self._conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
        if no_cache:
            self._headers["Cache-Control"] = "no-cache"
        self._count = 0

    def call(self, *, stream: bool) -> tuple[float, float]:
        """Seconds to the first text of the answer, and to its end."""
        self._count += 1
        body = json.dumps(
            {
                "model": "instant",
                "messages": [{"role": "user", "content": f"Say hello, call {self._count}"}],
                "max_tokens": 20,
                "temperature": 0,
                "stream": stream,
            }
        ).encode()
        started = time.perf_counter()
        self._conn.request("POST", "/v1/chat/completions", body, self._headers)
        response = self._conn.getresponse()
        received = b""
        first = 0.0
        while chunk := response.read1(65536):
            received += chunk
            if not first and _FIRST_TEXT.search(received):
                first = time.perf_counter() - started
        # read1 leaves a Content-Length answer open once it is all read; read() ends it,
        # so that the connection takes the next request.
        received += response.read()
        total = time.perf_counter() - started
        if response.status != 200 or not first:
            raise RuntimeError(f"HTTP {response.status}, no text in the answer: {received[:300]!r}")
        return first, total

    def close(self) -> None:
        self._conn.close()


def sequential_medians(
    clients: Mapping[str, SequentialClient], *, stream: bool, calls: int, rounds: int = 4
) -> dict[str, dict[str, float]]:
    """Median milliseconds to first text and to the end, per client, over ``calls`` calls
    each. The clients take turns in ``rounds`` blocks, so that the shared machine's drift
    within the run falls on all of them alike; 20 calls each go first, uncounted. Starts on
    a settled machine."""
    settle()
    for client in clients.values():
        for _ in range(20):
            client.call(stream=stream)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in clients}
    for _ in range(rounds):
        for name, client in clients.items():
            times[name] += [client.call(stream=stream) for _ in range(calls // rounds)]
    return {
        name: {
            "first_ms": statistics.median(t[0] for t in rows) * 1000,
            "total_ms": statistics.median(t[1] for t in rows) * 1000,
            "calls": len(rows),
        }
        for name, rows in times.items()
    }
