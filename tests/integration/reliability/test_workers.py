"""``llmserver serve --workers 3``: one command, three worker processes on one port, run as
replicas on one Postgres database and one Redis database. The exact RPM and quota checks of
``test_replicas`` hold against it, requests spread over the workers, ``/metrics`` merges
them, and SIGTERM to the parent drains every worker.

The workers' metrics files (in the private PROMETHEUS_MULTIPROC_DIR the parent made, read
from a worker's environment) tell which worker did what: each file belongs to one pid.
The SIGTERM test stops the module's server, so it comes last.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from integration.reliability.faultkit import (
    MODEL,
    Upstream,
    bearer,
    chat_body,
    http_models_file,
    metric_value,
    start_servers,
    tail,
)
from integration.reliability.replicakit import (
    Replicas,
    check_quota,
    check_rpm_burst,
    fire,
    shared_stores,
    unused_redis_db,
)
from livesupport import free_port, server_env, spawn_server, stop_server

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

WORKERS = 3
RPM = 20
BURST = 100
QUOTA_REQUESTS = 10
HAMMER = 30
SPREAD_REQUESTS = 60
MIN_STREAMS = 6
MAX_STREAMS = 20
STREAM_TOKENS = 160  # 8 s of dripping per stream: all still running at SIGTERM
CHAT_ROUTE = {"route": "/v1/chat/completions"}


@dataclass
class WorkerServer:
    servers: Replicas
    process: subprocess.Popen[bytes]
    metrics_dir: Path


def _metrics_dir(parent: int) -> Path:
    """The PROMETHEUS_MULTIPROC_DIR ``serve`` set for its workers (they inherit it; the
    parent's own /proc environ shows only what it was started with)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    for child in children:
        environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        for entry in environ:
            if entry.startswith(b"PROMETHEUS_MULTIPROC_DIR="):
                return Path(entry.split(b"=", 1)[1].decode())
    raise AssertionError(f"no worker of {parent} has PROMETHEUS_MULTIPROC_DIR")


def _per_worker(directory: Path, kind: str, name: str, labels: dict[str, str]) -> dict[int, float]:
    """A sample's value (summed over the labels not given) in each worker's own metrics
    file; ``kind`` is the file name's prefix, e.g. ``histogram``."""
    values: dict[int, float] = {}
    for path in directory.glob(f"{kind}_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        merged = MultiProcessCollector.merge([str(path)], accumulate=True)  # type: ignore[no-untyped-call]
        for metric in merged:
            for sample in metric.samples:
                if sample.name == name and labels.items() <= sample.labels.items():
                    values[pid] = values.get(pid, 0.0) + sample.value
    return values


def _loaded_workers(directory: Path) -> set[int]:
    loaded = _per_worker(directory, "gauge_livemin", "llmserver_model_loaded", {"model": MODEL})
    return {pid for pid, value in loaded.items() if value == 1}


def _chat_requests(directory: Path) -> dict[int, float]:
    name = "llmserver_http_request_duration_seconds_count"
    return _per_worker(directory, "histogram", name, CHAT_ROUTE)


@pytest.fixture(scope="module")
def workers(
    postgres_url: str,
    demo_model_dir: Path,
    upstream: Upstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerServer]:
    """One ``serve --workers 3`` with the demo model and the upstream's http models, every
    worker ready."""
    root = tmp_path_factory.mktemp("workers")
    models = http_models_file(root / "models.toml", upstream)
    with shared_stores(postgres_url, demo_model_dir, LLMSERVER_MODELS_FILE=str(models)) as stores:
        port, log = free_port(), root / "server.log"
        [process] = start_servers([stores.env], [log], [port], args=("--workers", str(WORKERS)))
        try:
            # /readyz answered by one worker says nothing of the others, which would answer
            # 503 while their demo model loads.
            directory = _metrics_dir(process.pid)
            deadline = time.monotonic() + 120
            while len(_loaded_workers(directory)) < WORKERS:
                assert time.monotonic() < deadline, f"workers not ready:\n{tail(log)}"
                time.sleep(0.2)
            servers = Replicas(
                [f"http://127.0.0.1:{port}"], stores.keys, stores.database_url, [log]
            )
            yield WorkerServer(servers, process, directory)
        finally:
            stop_server(process)


async def test_rpm_limit_holds_across_workers(workers: WorkerServer) -> None:
    await check_rpm_burst(workers.servers, RPM, BURST, concurrency=BURST)


async def test_quota_holds_across_workers(workers: WorkerServer) -> None:
    await check_quota(workers.servers, QUOTA_REQUESTS, HAMMER, concurrency=HAMMER)


async def _scrape(url: str) -> float:
    async with httpx.AsyncClient(timeout=30) as client:
        body = (await client.get(url + "/metrics")).text
    return sum(
        metric_value(
            body,
            "llmserver_http_request_duration_seconds_count",
            f'route="{CHAT_ROUTE["route"]}",status_class="{status_class}"',
        )
        for status_class in ("2xx", "4xx", "5xx")
    )


async def test_requests_spread_over_workers_and_metrics_merge(workers: WorkerServer) -> None:
    url = workers.servers.urls[0]
    before, scraped_before = _chat_requests(workers.metrics_dir), await _scrape(url)
    bodies = [chat_body(model="fast") for _ in range(SPREAD_REQUESTS)]
    tally = await fire(workers.servers, workers.servers.keys.user, bodies, concurrency=10)
    after, scraped_after = _chat_requests(workers.metrics_dir), await _scrape(url)
    served = {pid: after[pid] - before.get(pid, 0.0) for pid in after}
    print(f"\nrequests per worker pid: {served}")
    assert tally.count(200) == SPREAD_REQUESTS
    assert sum(served.values()) == SPREAD_REQUESTS
    assert len([n for n in served.values() if n > 0]) >= 2
    # One worker answers the scrape, and its answer counts every worker's requests.
    assert scraped_after - scraped_before == SPREAD_REQUESTS


def test_a_worker_that_cannot_start_stops_the_server_with_a_failure(tmp_path: Path) -> None:
    """uvicorn's supervisor stops every worker when one fails before serving, and returns
    as it does on SIGTERM; ``serve`` must still exit non-zero for process supervisors.
    The workers use the PROMETHEUS_MULTIPROC_DIR the user set, and it is left in place."""
    client, redis_url = unused_redis_db()
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env = server_env(
        f"sqlite+aiosqlite:///{tmp_path / 'unmigrated.db'}",
        tmp_path,
        LLMSERVER_PROFILE="none",
        LLMSERVER_REDIS_URL=redis_url,
        LLMSERVER_UI_KEY="not-a-key",  # refused at start-up, in every worker
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    process = spawn_server(env, tmp_path / "server.log", free_port(), ["--workers", "2"])
    try:
        exit_code = process.wait(120)
    finally:
        stop_server(process)
        client.flushdb()
        client.close()
    assert exit_code == 3, tail(tmp_path / "server.log")
    assert "LLMSERVER_UI_KEY is not a usable key" in (tmp_path / "server.log").read_text()
    assert len({p.stem.rsplit("_", 1)[1] for p in metrics_dir.glob("*.db")}) == 2


async def _drip(client: httpx.AsyncClient, key: str, started: asyncio.Event) -> list[str]:
    body = chat_body(model="drip", max_tokens=STREAM_TOKENS, stream=True)
    async with client.stream(
        "POST", "/v1/chat/completions", headers=bearer(key), json=body
    ) as response:
        assert response.status_code == 200
        started.set()
        return [line async for line in response.aiter_lines() if line]


async def test_sigterm_to_the_parent_drains_every_worker_and_exits_0(
    workers: WorkerServer,
) -> None:
    process, directory = workers.process, workers.metrics_dir
    worker_pids = _loaded_workers(directory)
    limits = httpx.Limits(max_connections=MAX_STREAMS, max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=workers.servers.urls[0], timeout=60, limits=limits
    ) as client:
        key = workers.servers.keys.user
        streams: list[asyncio.Task[list[str]]] = []
        in_flight: dict[int, float] = {}
        # One at a time (a worker woken by a burst of connections accepts them all), until
        # two workers or more have streams running: which worker accepts is up to a race.
        while len(streams) < MIN_STREAMS or len([n for n in in_flight.values() if n]) < 2:
            assert len(streams) < MAX_STREAMS, f"every stream went to one worker: {in_flight}"
            started = asyncio.Event()
            streams.append(asyncio.create_task(_drip(client, key, started)))
            await asyncio.wait_for(started.wait(), 30)
            in_flight = _per_worker(
                directory, "gauge_livesum", "llmserver_http_requests_in_flight", CHAT_ROUTE
            )
        process.send_signal(signal.SIGTERM)
        sent_at = time.monotonic()
        results = await asyncio.gather(*streams)
    exit_code = await asyncio.to_thread(process.wait, 60)
    print(
        f"\nin flight per worker at SIGTERM: {in_flight}; parent exited {exit_code} "
        f"{time.monotonic() - sent_at:.1f}s after it"
    )
    assert sum(in_flight.values()) == len(streams)  # none had ended before SIGTERM
    for lines in results:
        assert lines[-1] == "data: [DONE]"
        chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
        text = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )
        assert text == " tok" * STREAM_TOKENS
    assert exit_code == 0
    for pid in worker_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not directory.exists(), "the private metrics directory outlived the server"
