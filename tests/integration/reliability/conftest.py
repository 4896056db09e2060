"""Fixtures for the reliability tests: replicas on shared Postgres + Redis."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from integration.reliability.faultkit import (
    Replicas,
    Upstream,
    drop_database,
    fresh_database,
    start_servers,
)
from livesupport import (
    TEST_SECRET,
    free_port,
    issue_keys,
    migrate,
    server_env,
    stop_server,
)

SHARED_REDIS = os.environ.get("LLMSERVER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _unused_redis_db() -> tuple[redis.Redis, int]:
    """A database number of the shared Redis that holds nothing, so the test owns it."""
    base = SHARED_REDIS.rsplit("/", 1)[0]
    for db in range(15, 0, -1):
        client = redis.Redis.from_url(f"{base}/{db}")
        try:
            if client.dbsize() == 0:
                return client, db
        except redis.RedisError as exc:
            pytest.skip(f"no Redis server at {base}: {exc}")
        client.close()
    pytest.skip("every database of the shared Redis is in use")


@pytest.fixture(scope="module")
def replicas(
    postgres_url: str, demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    """Three server processes on one Postgres database and one Redis database."""
    root = tmp_path_factory.mktemp("replicas")
    database_url = fresh_database(postgres_url)
    client, db = _unused_redis_db()
    base = SHARED_REDIS.rsplit("/", 1)[0]
    env = server_env(
        database_url,
        demo_model_dir,
        LLMSERVER_REDIS_URL=f"{base}/{db}",
        LLMSERVER_TORCH_THREADS="1",
    )
    processes = []
    try:
        migrate(database_url, env)
        keys = asyncio.run(issue_keys(database_url, TEST_SECRET))
        ports = [free_port() for _ in range(3)]
        logs = [root / f"replica-{i}.log" for i in range(3)]
        processes = start_servers([env] * 3, logs, ports)
        yield Replicas([f"http://127.0.0.1:{p}" for p in ports], keys, database_url, logs)
    finally:
        for process in processes:
            stop_server(process)
        client.flushdb()
        client.close()
        drop_database(database_url)


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    """The loopback OpenAI-compatible upstream the http models talk to."""
    server = Upstream()
    server.start()
    yield server
    server.stop()
