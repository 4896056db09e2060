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
import subprocess
import tempfile
from pathlib import Path

from bench.load import CONNECTIONS, DURATION_S, describe, start, stop, wrk
from bench.report import Target, progress, save
from bench.support import free_port, issue_key, migrate, server_env

SECRET = "bench-server-secret-" + "b" * 32


def run() -> list[Target]:
    if subprocess.run(["which", "wrk"], capture_output=True).returncode != 0:
        raise SystemExit("wrk is not installed: run scripts/install-bench-tools.sh")
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite+aiosqlite:///{tmp}/bench.db"
        env = server_env(server_secret=SECRET, database_url=db, profile="none", log_format="json")
        progress("migrating a fresh SQLite database")
        migrate(env)
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
            stop([bare, gateway])
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
