"""The gateway as a proxy: the real app with an ``http`` model in front of an instant
OpenAI-compatible upstream (bench/apps.py ``upstream``, a process of its own), against
calling that upstream directly, and against LiteLLM's proxy in front of the same upstream
(issue 18).

Scenarios, all in one run: (a) single mode (SQLite, one process), ``Cache-Control:
no-cache``, so every call goes upstream: one client's sequential median over the direct
call's <= +0.5 ms, and wrk throughput at 32 connections >= 0.35x the upstream's own;
(b) the same streamed: time to the first text <= the upstream's + 0.5 ms; (c) replicas
mode (PostgreSQL and Redis, one process), hits and no-cache misses each >= 0.5x single
mode's; (d) LiteLLM: our no-cache throughput over its, and both sequential medians.

Every server starts before the first measurement (LiteLLM takes half a minute), so no
start-up competes for the CPU with one. Sequential calls take turns between servers in
blocks, and the upstream's wrk baseline is the mean of a run before and one after the
rest, against the shared machine's drift.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.load import (
    CONNECTIONS,
    SequentialClient,
    describe,
    launch,
    ready,
    sequential_medians,
    start,
    stop,
    wrk,
)
from bench.proxy_services import (
    LITELLM_KEY,
    create_database,
    drop_database,
    flushed_redis,
    litellm_missing,
    spawn_litellm,
)
from bench.report import Target, progress, save
from bench.support import free_port, issue_key, migrate, server_env

SECRET = "bench-server-secret-" + "p" * 32
DURATION_S = int(os.environ.get("BENCH_PROXY_DURATION_S", "8"))
WARMUP_S = 2
CALLS = int(os.environ.get("BENCH_SEQUENTIAL_CALLS", "2000"))
# LiteLLM takes tens of milliseconds a call here: fewer calls keep its pair to seconds.
LITELLM_CALLS = int(os.environ.get("BENCH_LITELLM_CALLS", "200"))
Medians = dict[str, dict[str, float]]
"""Per server: ``first_ms`` and ``total_ms`` (sequential medians) and ``calls``."""
LIMITS: dict[str, Any] = {"rpm_limit": 10_000_000, "quota_tokens": 10**15}


class Server:
    """A running server: its port and the API key our client sends it."""

    def __init__(self, name: str, port: int, key: str) -> None:
        self.name, self.port, self.key = name, port, key

    def client(self) -> SequentialClient:
        return SequentialClient(self.port, self.key, no_cache=True)


@contextmanager
def running(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    try:
        yield
    finally:
        stop([proc])


def gateway(stack: ExitStack, name: str, tmp: Path, upstream_port: int, **settings: str) -> Server:
    """The real server (``llmserver serve``) on a migrated database, serving ``instant``
    from the upstream through an ``http`` model."""
    models = tmp / "models.toml"
    models.write_text(
        "[[models]]\n"
        'id = "instant"\n'
        'backend = "http"\n'
        f'source = "http://127.0.0.1:{upstream_port}"\n'
        "context_length = 4096\n"
    )
    env = server_env(
        server_secret=SECRET,
        profile="none",
        models_file=str(models),
        log_format="json",
        **settings,
    )
    migrate(env)
    key = asyncio.run(issue_key(settings["database_url"], SECRET, **LIMITS))
    port = free_port()
    argv = [sys.executable, "-m", "llmserver.cli", "serve", "--port", str(port)]
    stack.enter_context(running(launch(name, argv, port, env, tmp / f"{name}.log")))
    return Server(name, port, key)


def check_cache(server: Server) -> None:
    """The scenarios measure what they say: a repeated request is a cache hit, and one
    with ``Cache-Control: no-cache`` bypasses the cache (goes upstream)."""
    url = f"http://127.0.0.1:{server.port}/v1/chat/completions"
    body = {
        "model": "instant",
        "messages": [{"role": "user", "content": "probe"}],
        "temperature": 0,
    }
    auth = {"Authorization": f"Bearer {server.key}"}
    seen = []
    for headers in (auth, auth, auth | {"Cache-Control": "no-cache"}):
        response = httpx.post(url, json=body, headers=headers, timeout=30)
        response.raise_for_status()
        seen.append(response.headers.get("x-cache"))
    if seen[1:] != ["HIT", "BYPASS"]:
        raise RuntimeError(f"{server.name}: x-cache {seen}, not [..., HIT, BYPASS]")


def litellm(stack: ExitStack, tmp: Path, upstream_port: int) -> Callable[[], Server | str]:
    """Starts LiteLLM's proxy; the function returned waits until it serves, and returns
    it, or why it is not there (not installed, did not start)."""
    missing = litellm_missing()
    if missing is not None:
        return lambda: missing
    port = free_port()
    proc = spawn_litellm(port, upstream_port, tmp)
    stack.enter_context(running(proc))

    def serving() -> Server | str:
        try:
            ready(
                "LiteLLM",
                proc,
                port,
                tmp / "litellm.log",
                health="/health/liveliness",
                timeout_s=120,
            )
        except RuntimeError as exc:
            return str(exc).splitlines()[0]
        return Server("LiteLLM", port, LITELLM_KEY)

    return serving


def sequential(servers: list[Server], *, stream: bool, calls: int) -> Medians:
    progress(
        f"sequential {'streamed' if stream else 'JSON'} calls, {calls} each: "
        + ", ".join(s.name for s in servers)
    )
    clients = {s.name: s.client() for s in servers}
    try:
        return sequential_medians(clients, stream=stream, calls=calls)
    finally:
        for client in clients.values():
            client.close()


def run() -> list[Target]:
    if subprocess.run(["which", "wrk"], capture_output=True).returncode != 0:
        raise SystemExit("wrk is not installed: run scripts/install-bench-tools.sh")
    with tempfile.TemporaryDirectory() as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        upstream_port = free_port()
        progress("starting the instant upstream, the gateway (single, replicas) and LiteLLM")
        stack.enter_context(
            running(start("upstream", upstream_port, os.environ, tmp / "upstream.log"))
        )
        upstream = Server("upstream", upstream_port, "none")
        # LiteLLM starts first: it takes the longest, and serves by the time ours do.
        litellm_serving = litellm(stack, tmp, upstream_port)
        (tmp / "single").mkdir()
        single = gateway(
            stack,
            "single",
            tmp / "single",
            upstream_port,
            database_url=f"sqlite+aiosqlite:///{tmp}/single/bench.db",
            deployment="single",
            redis_url="",
        )
        database_url = create_database()
        stack.callback(drop_database, database_url)
        (tmp / "replicas").mkdir()
        replicas = gateway(
            stack,
            "replicas",
            tmp / "replicas",
            upstream_port,
            database_url=database_url,
            deployment="replicas",
            redis_url=flushed_redis(),
        )
        other = litellm_serving()
        if isinstance(other, str):
            progress(f"LiteLLM: not measured ({other})")
        theirs = [] if isinstance(other, str) else [other]
        check_cache(single)
        check_cache(replicas)
        progress(f"warming up every server ({WARMUP_S} s each)")
        for server in [upstream, single, replicas, *theirs]:
            wrk(server.port, server.key, unique=True, no_cache=True, duration=WARMUP_S)
        seq = {
            "json": sequential([upstream, single], stream=False, calls=CALLS),
            "stream": sequential([upstream, single], stream=True, calls=CALLS),
        }
        if theirs:
            seq["litellm"] = sequential([single, *theirs], stream=False, calls=LITELLM_CALLS)
        loads = [
            ("upstream_before", upstream, True),
            ("single_miss", single, True),
            ("single_hit", single, False),
            ("replicas_miss", replicas, True),
            ("replicas_hit", replicas, False),
            *[("litellm", server, True) for server in theirs],
            ("upstream_after", upstream, True),
        ]
        runs: dict[str, dict[str, float]] = {}
        for label, server, miss in loads:
            what = "no-cache" if miss else "cache hits"
            progress(f"{label}: {what}, {CONNECTIONS} connections, {DURATION_S} s")
            runs[label] = wrk(
                server.port, server.key, unique=miss, no_cache=miss, duration=DURATION_S
            )
    return report(runs, seq, other)


def report(
    runs: dict[str, dict[str, float]], seq: dict[str, Medians], other: Server | str
) -> list[Target]:
    before, after = runs["upstream_before"], runs["upstream_after"]
    base = {k: (before[k] + after[k]) / 2 for k in ("rps", "p50_us", "p99_us")}
    up_json, gw_json = seq["json"]["upstream"], seq["json"]["single"]
    up_stream, gw_stream = seq["stream"]["upstream"], seq["stream"]["single"]
    targets = [
        Target(
            "no-cache sequential median overhead, ms (gateway - upstream)",
            gw_json["total_ms"] - up_json["total_ms"],
            0.5,
            "<=",
        ),
        Target(
            "no-cache throughput / upstream's",
            runs["single_miss"]["rps"] / base["rps"],
            0.35,
            ">=",
        ),
        Target(
            "streamed first text, ms over upstream's (sequential median)",
            gw_stream["first_ms"] - up_stream["first_ms"],
            0.5,
            "<=",
        ),
        Target(
            "replicas / single throughput, cache hits",
            runs["replicas_hit"]["rps"] / runs["single_hit"]["rps"],
            0.5,
            ">=",
        ),
        Target(
            "replicas / single throughput, no-cache",
            runs["replicas_miss"]["rps"] / runs["single_miss"]["rps"],
            0.5,
            ">=",
        ),
    ]
    ms = "{:.3f} ms".format
    measurements = {
        "upstream direct, 32 connections (mean of before and after)": describe(base),
        "upstream direct, before / after": f"{before['rps']:.0f} / {after['rps']:.0f} req/s",
        "single, no-cache": describe(runs["single_miss"]),
        "single, cache hits": describe(runs["single_hit"]),
        "replicas, no-cache": describe(runs["replicas_miss"]),
        "replicas, cache hits": describe(runs["replicas_hit"]),
        "sequential JSON median, upstream direct": ms(up_json["total_ms"]),
        "sequential JSON median, single no-cache": ms(gw_json["total_ms"]),
        "sequential stream first text median, upstream / single": (
            f"{ms(up_stream['first_ms'])} / {ms(gw_stream['first_ms'])}"
        ),
        "sequential stream whole answer median, upstream / single": (
            f"{ms(up_stream['total_ms'])} / {ms(gw_stream['total_ms'])}"
        ),
    }
    if isinstance(other, str):
        measurements["LiteLLM"] = f"not measured ({other})"
    else:
        measurements["LiteLLM, no-cache"] = describe(runs["litellm"])
        pair = seq["litellm"]
        measurements[
            f"sequential JSON median, single / LiteLLM ({LITELLM_CALLS} calls each, a run of "
            "their own; LiteLLM at its defaults, one worker, master key, no database)"
        ] = f"{ms(pair['single']['total_ms'])} / {ms(pair['LiteLLM']['total_ms'])}"
        targets.append(
            Target(
                "no-cache throughput / LiteLLM's",
                runs["single_miss"]["rps"] / runs["litellm"]["rps"],
                1.0,
                ">=",
            )
        )
    measurements["load"] = (
        f"wrk 2 threads, {CONNECTIONS} connections, {DURATION_S} s each; sequential: one "
        f"keep-alive client, {CALLS} calls a server in 4 alternating blocks; same machine"
    )
    raw = {"wrk": runs, "sequential": seq}
    save("proxy", "Gateway as a proxy (instant upstream) and LiteLLM", measurements, targets, raw)
    return targets


if __name__ == "__main__":
    run()
