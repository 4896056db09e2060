"""Gateway overhead: the full pipeline vs a bare Litestar + msgspec route (issue 6).

Both servers run as one uvicorn process each with the same options; wrk drives 32
connections for 10 s per scenario. Targets: throughput >= 0.5x bare and p99 <= 3x bare
on cache misses; a cache hit's p50 <= 1.5x bare p50.

The bare route runs before and after the gateway, and the baseline is the mean of the two
runs. On a shared machine, the speed drifts by several per cent within a minute; a baseline
on one side only would carry that drift into every ratio.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.report import Target, progress, save
from bench.support import free_port, issue_key

ROOT = Path(__file__).resolve().parent.parent
LUA = Path(__file__).resolve().parent / "wrk_chat.lua"
SECRET = "bench-server-secret-" + "b" * 32
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
DURATION_S = int(os.environ.get("BENCH_DURATION_S", "10"))


def start(which: str, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.apps", which, "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{which} server died:\n{log.read_text()}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{which} server did not start")


def wrk(port: int, key: str, *, unique: bool, duration: int = DURATION_S) -> dict[str, float]:
    env = {**os.environ, "BENCH_KEY": key, "BENCH_UNIQUE": "1" if unique else "0"}
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


def describe(r: dict[str, float]) -> str:
    return f"{r['rps']:.0f} req/s, p50 {r['p50_us'] / 1000:.2f} ms, p99 {r['p99_us'] / 1000:.2f} ms"


def run() -> list[Target]:
    if subprocess.run(["which", "wrk"], capture_output=True).returncode != 0:
        raise SystemExit("wrk is not installed: run scripts/install-bench-tools.sh")
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite+aiosqlite:///{tmp}/bench.db"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LLMSERVER_")}
        env.update(
            LLMSERVER_SERVER_SECRET=SECRET,
            LLMSERVER_DATABASE_URL=db,
            LLMSERVER_PROFILE="none",
            LLMSERVER_LOG_FORMAT="json",
        )
        progress("migrating a fresh SQLite database")
        subprocess.run(
            [sys.executable, "-m", "llmserver.cli", "migrate"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        key = asyncio.run(issue_key(db, SECRET, rpm_limit=10_000_000, quota_tokens=10**15))
        bare_port, gw_port = free_port(), free_port()
        bare = start("bare", bare_port, env, Path(tmp) / "bare.log")
        gateway = start("gateway", gw_port, env, Path(tmp) / "gateway.log")
        try:
            progress("warming up both servers (3 s each)")
            wrk(bare_port, key, unique=True, duration=3)
            wrk(gw_port, key, unique=True, duration=3)
            progress(f"bare route (before): {CONNECTIONS} connections, {DURATION_S} s")
            before = wrk(bare_port, key, unique=True)
            progress(f"gateway, cache misses: {CONNECTIONS} connections, {DURATION_S} s")
            miss = wrk(gw_port, key, unique=True)
            progress(f"gateway, cache hits: {CONNECTIONS} connections, {DURATION_S} s")
            hit = wrk(gw_port, key, unique=False)
            progress(f"bare route (after): {CONNECTIONS} connections, {DURATION_S} s")
            after = wrk(bare_port, key, unique=True)
        finally:
            for proc in (bare, gateway):
                proc.terminate()
                proc.wait(timeout=30)
    base = {k: (before[k] + after[k]) / 2 for k in ("rps", "p50_us", "p99_us")}
    targets = [
        Target("gateway throughput / bare (cache miss)", miss["rps"] / base["rps"], 0.5, ">="),
        Target("gateway p99 / bare p99 (cache miss)", miss["p99_us"] / base["p99_us"], 3.0, "<="),
        Target("cache-hit p50 / bare p50", hit["p50_us"] / base["p50_us"], 1.5, "<="),
    ]
    measurements = {
        "bare route (mean of the two runs)": describe(base),
        "bare route, before the gateway": describe(before),
        "bare route, after the gateway": describe(after),
        "gateway, cache miss": describe(miss),
        "gateway, cache hit": describe(hit),
        "load": f"wrk 2 threads, {CONNECTIONS} connections, {DURATION_S} s each, same machine",
    }
    save(
        "gateway",
        "Gateway overhead (instant backend)",
        measurements,
        targets,
        {"bare": base, "bare_before": before, "bare_after": after, "miss": miss, "hit": hit},
    )
    return targets


if __name__ == "__main__":
    run()
