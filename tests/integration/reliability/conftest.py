"""Fixtures for the reliability tests: replicas on shared Postgres + Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.reliability.faultkit import Upstream, start_servers
from integration.reliability.replicakit import Replicas, shared_stores
from livesupport import free_port, stop_server


@pytest.fixture(scope="module")
def replicas(
    postgres_url: str, demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    """Three server processes on one Postgres database and one Redis database."""
    root = tmp_path_factory.mktemp("replicas")
    with shared_stores(postgres_url, demo_model_dir) as stores:
        ports = [free_port() for _ in range(3)]
        logs = [root / f"replica-{i}.log" for i in range(3)]
        processes = start_servers([stores.env] * 3, logs, ports)
        try:
            urls = [f"http://127.0.0.1:{p}" for p in ports]
            yield Replicas(urls, stores.keys, stores.database_url, logs)
        finally:
            for process in processes:
                stop_server(process)


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    """The loopback OpenAI-compatible upstream the http models talk to."""
    server = Upstream()
    server.start()
    yield server
    server.stop()
