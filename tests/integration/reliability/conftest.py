"""Fixtures for the reliability tests: replicas on shared Postgres + Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.reliability.faultkit import Upstream
from integration.reliability.replicakit import Replicas, running_replicas


@pytest.fixture(scope="module")
def replicas(
    postgres_url: str, demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    """Three server processes on one Postgres database and one Redis database."""
    with running_replicas(
        postgres_url, demo_model_dir, tmp_path_factory.mktemp("replicas")
    ) as replicas:
        yield replicas


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    """The loopback OpenAI-compatible upstream the http models talk to."""
    server = Upstream()
    server.start()
    yield server
    server.stop()
