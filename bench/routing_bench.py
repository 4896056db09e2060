"""Routing (issue 19): what spreading a model over deployments costs, and what an upstream
that is down for the whole run costs.

One gateway process (``llmserver serve``, single mode, SQLite) serves three models, all
over ``http`` to instant upstreams (bench/apps.py ``upstream``, processes of their own):
``one`` (a plain model on upstream A), ``two`` (``[[models.deployments]]`` on A and B,
least-busy) and ``half-down`` (deployments on A and on a port where nothing listens, in
that order, weighted, so about half the requests try the dead one first). Every request
says ``Cache-Control: no-cache``, so each goes upstream. A closed loop of ``CLIENTS``
concurrent clients (asyncio + httpx in this process) runs against each model in turn,
``ROUNDS`` times, alternating against the shared machine's drift; the figures are the
rounds' totals.

Targets: ``two``'s throughput >= 0.9x ``one``'s (routing's overhead); ``half-down``: every
request answered, and its p99 <= 2x ``two``'s. The dead deployment's circuit opens after
LLMSERVER_ROUTING_FAILURE_THRESHOLD refused connections and is probed once per cool-down,
so few requests pay for it. Timings on a shared 2-core machine are noisy: compare ratios.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.load import launch, settle, start, stop
from bench.report import Target, progress, save
from bench.support import free_port, issue_key, migrate, server_env

SECRET = "bench-server-secret-" + "r" * 32
CLIENTS = int(os.environ.get("BENCH_ROUTING_CLIENTS", "16"))
SECONDS = float(os.environ.get("BENCH_ROUTING_SECONDS", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUTING_ROUNDS", "3"))
MODELS = ("one", "two", "half-down")


@dataclass
class Tally:
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    """Of the answered requests, in seconds."""


def models_file(path: Path, a: int, b: int, dead: int) -> Path:
    def deployment(port: int) -> str:
        return (
            f'  [[models.deployments]]\n  backend = "http"\n  source = "http://127.0.0.1:{port}"\n'
        )

    path.write_text(
        f'[[models]]\nid = "one"\nbackend = "http"\nsource = "http://127.0.0.1:{a}"\n\n'
        f'[[models]]\nid = "two"\nrouting = "least-busy"\n{deployment(a)}{deployment(b)}\n'
        f'[[models]]\nid = "half-down"\nrouting = "weighted"\n{deployment(a)}{deployment(dead)}'
    )
    return path


async def closed_loop(port: int, key: str, model: str, tally: Tally) -> None:
    """``CLIENTS`` clients calling one after another for ``SECONDS``, into ``tally``."""
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {key}", "Cache-Control": "no-cache"}
    deadline = time.perf_counter() + SECONDS
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one_client(n: int) -> None:
            i = 0
            while time.perf_counter() < deadline:
                i += 1
                body = {
                    "model": model,
                    "messages": [{"role": "user", "content": f"client {n} call {i}"}],
                    "max_tokens": 8,
                }
                started = time.perf_counter()
                response = await client.post(url, json=body, headers=headers)
                if response.status_code == 200:
                    tally.latencies.append(time.perf_counter() - started)
                else:
                    tally.failed += 1

        await asyncio.gather(*(one_client(n) for n in range(CLIENTS)))


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) > 1 else float("nan")


def run() -> list[Target]:
    with tempfile.TemporaryDirectory() as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        a, b, dead = free_port(), free_port(), free_port()
        progress("starting two instant upstreams and the gateway")
        for name, port in (("upstream-a", a), ("upstream-b", b)):
            proc = start("upstream", port, os.environ, tmp / f"{name}.log")
            stack.callback(stop, [proc])
        database_url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        env = server_env(
            server_secret=SECRET,
            profile="none",
            models_file=str(models_file(tmp / "models.toml", a, b, dead)),
            log_format="json",
            database_url=database_url,
            deployment="single",
            redis_url="",
            routing_seed="19",
        )
        migrate(env)
        key = asyncio.run(
            issue_key(database_url, SECRET, rpm_limit=10_000_000, quota_tokens=10**15)
        )
        port = free_port()
        argv = [sys.executable, "-m", "llmserver.cli", "serve", "--port", str(port)]
        gateway = launch("gateway", argv, port, env, tmp / "gateway.log")
        stack.callback(stop, [gateway])
        totals = {m: Tally() for m in MODELS}
        for round_no in range(1, ROUNDS + 1):
            for model in MODELS:
                # The machine is shared: wait a little for quiet, never long.
                settle(max_wait_s=3)
                progress(f"round {round_no}/{ROUNDS}: {model}")
                asyncio.run(closed_loop(port, key, model, totals[model]))
    rps = {m: len(t.latencies) / (SECONDS * ROUNDS) for m, t in totals.items()}
    tails = {m: p99(t.latencies) for m, t in totals.items()}
    down = totals["half-down"]
    measurements = {
        m: f"{rps[m]:.0f} req/s, p99 {tails[m] * 1000:.1f} ms, {t.failed} failed "
        f"({CLIENTS} clients, {ROUNDS} x {SECONDS:g} s)"
        for m, t in totals.items()
    }
    targets = [
        Target("two upstreams / one: throughput", rps["two"] / rps["one"], 0.9, ">="),
        Target(
            "one upstream down: success rate",
            len(down.latencies) / max(1, len(down.latencies) + down.failed),
            1.0,
            ">=",
        ),
        Target(
            "one upstream down: p99 / healthy p99", tails["half-down"] / tails["two"], 2.0, "<="
        ),
    ]
    save(
        "routing",
        "Routing: overhead of two deployments, and one of two down (cache bypassed)",
        measurements,
        targets,
        {m: {"rps": rps[m], "p99_s": tails[m], "failed": t.failed} for m, t in totals.items()},
    )
    return targets
