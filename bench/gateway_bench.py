"""Gateway overhead: the full pipeline vs a bare Litestar + msgspec route (issue 6).

Both servers run as one uvicorn process each with the same options; wrk drives 32
connections for 10 s per scenario. Targets: throughput >= 0.5x bare and p99 <= 3x bare
on cache misses; a cache hit's p50 <= 1.5x bare p50. The hits come from a key with every
limit (RPM, quota, TPM, max_parallel) in a team with every limit, none of which ever
refuses: the holds such a key takes are part of a hit's cost.

Tracing (no target, measured): a third server, the same gateway with OpenTelemetry on
(``LLMSERVER_OTEL_ENDPOINT``, every request sampled) exporting to a local OTLP sink, takes
the same misses and hits right after the untraced one; the tables give traced / untraced.

The bare route runs before and after the gateway, and the baseline is the mean of the two
runs. On a shared machine, the speed drifts by several per cent within a minute; a baseline
on one side only would carry that drift into every ratio.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.load import CONNECTIONS, DURATION_S, describe, start, stop, wrk
from bench.report import Target, progress, save
from bench.support import free_port, issue_key, migrate, server_env

SECRET = "bench-server-secret-" + "b" * 32


LIMITS: dict[str, Any] = {"rpm_limit": 10_000_000, "quota_tokens": 10**15}
LIMITED: dict[str, Any] = {**LIMITS, "tpm_limit": 10**12, "max_parallel": 10**6}
"""The cache-hit scenario's key: every per-key limit (none ever refuses) and a team with
them all, so the hits pay for the holds a limited key in a team takes."""


def _database(tmp: str, name: str) -> tuple[dict[str, str], str, str]:
    """A fresh, migrated SQLite database of a gateway's own (a single-process server
    claims its database): the server environment for it, an API key in it, and a key with
    every limit in a team with every limit (``LIMITED``)."""
    db = f"sqlite+aiosqlite:///{tmp}/{name}.db"
    env = server_env(server_secret=SECRET, database_url=db, profile="none", log_format="json")
    migrate(env)
    key = asyncio.run(issue_key(db, SECRET, **LIMITS))
    return env, key, asyncio.run(issue_key(db, SECRET, team=LIMITED, **LIMITED))


def run() -> list[Target]:
    if subprocess.run(["which", "wrk"], capture_output=True).returncode != 0:
        raise SystemExit("wrk is not installed: run scripts/install-bench-tools.sh")
    with tempfile.TemporaryDirectory() as tmp:
        progress("migrating fresh SQLite databases")
        env, key, limited = _database(tmp, "bench")
        traced_env, traced_key, traced_limited = _database(tmp, "traced")
        bare_port, gw_port, sink_port, traced_port = (free_port() for _ in range(4))
        traced_env["LLMSERVER_OTEL_ENDPOINT"] = f"http://127.0.0.1:{sink_port}"
        servers = [
            start("bare", bare_port, env, Path(tmp) / "bare.log"),
            start("gateway", gw_port, env, Path(tmp) / "gateway.log"),
            start("otlp_sink", sink_port, env, Path(tmp) / "sink.log"),
            start("gateway", traced_port, traced_env, Path(tmp) / "traced.log"),
        ]
        try:
            progress("warming up the servers (3 s each)")
            wrk(bare_port, key, unique=True, duration=3)
            wrk(gw_port, key, unique=True, duration=3)
            wrk(traced_port, traced_key, unique=True, duration=3)
            progress(f"bare route (before): {CONNECTIONS} connections, {DURATION_S} s")
            before = wrk(bare_port, key, unique=True)
            progress(f"gateway, cache misses: {CONNECTIONS} connections, {DURATION_S} s")
            miss = wrk(gw_port, key, unique=True)
            progress(f"gateway, cache hits: {CONNECTIONS} connections, {DURATION_S} s")
            hit = wrk(gw_port, limited, unique=False)
            progress(f"traced gateway, cache misses: {CONNECTIONS} connections, {DURATION_S} s")
            traced_miss = wrk(traced_port, traced_key, unique=True)
            progress(f"traced gateway, cache hits: {CONNECTIONS} connections, {DURATION_S} s")
            traced_hit = wrk(traced_port, traced_limited, unique=False)
            progress(f"bare route (after): {CONNECTIONS} connections, {DURATION_S} s")
            after = wrk(bare_port, key, unique=True)
        finally:
            stop(servers)
    base = {k: (before[k] + after[k]) / 2 for k in ("rps", "p50_us", "p99_us")}
    targets = [
        Target("gateway throughput / bare (cache miss)", miss["rps"] / base["rps"], 0.5, ">="),
        Target("gateway p99 / bare p99 (cache miss)", miss["p99_us"] / base["p99_us"], 3.0, "<="),
        Target("cache-hit p50 / bare p50", hit["p50_us"] / base["p50_us"], 1.5, "<="),
    ]
    traced = {
        "cache miss": traced_miss["rps"] / miss["rps"],
        "cache hit": traced_hit["rps"] / hit["rps"],
    }
    measurements = {
        "bare route (mean of the two runs)": describe(base),
        "bare route, before the gateway": describe(before),
        "bare route, after the gateway": describe(after),
        "gateway, cache miss": describe(miss),
        "gateway, cache hit (a key with TPM and max_parallel, in a team with every limit)": (
            describe(hit)
        ),
        "traced gateway, cache miss": describe(traced_miss),
        "traced gateway, cache hit": describe(traced_hit),
        **{f"tracing on / off throughput, {kind}": f"{r:.2f}x" for kind, r in traced.items()},
        "load": f"wrk 2 threads, {CONNECTIONS} connections, {DURATION_S} s each, same machine",
    }
    save(
        "gateway",
        "Gateway overhead (instant backend)",
        measurements,
        targets,
        {
            "bare": base,
            "bare_before": before,
            "bare_after": after,
            "miss": miss,
            "hit": hit,
            "traced_miss": traced_miss,
            "traced_hit": traced_hit,
        },
    )
    return targets


if __name__ == "__main__":
    run()
