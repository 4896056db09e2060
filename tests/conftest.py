"""Shared fixtures for tests that need the real Postgres and Redis servers."""

from __future__ import annotations

import asyncio
import fcntl
import os
import secrets
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING

import asyncpg
import pytest
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from llmserver.adapters.redis.pipe import RedisPipe

# Many tests start Python subprocesses (servers, CLI commands). With PYTHONDONTWRITEBYTECODE
# set (as on some CI machines) and a venv installed without bytecode, each of them compiles
# every module it imports from source: some 5-10 s of CPU per server before it does
# anything. Caching the bytecode lets the first process pay that and the rest reuse it.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

POSTGRES_SERVER_URL = os.environ.get(
    "LLMSERVER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("LLMSERVER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def _admin(sql: str) -> None:
    server = make_url(POSTGRES_SERVER_URL).set(drivername="postgresql")
    conn = await asyncpg.connect(server.render_as_string(hide_password=False), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_test_database() -> str:
    """A new empty database on the test server; returns its SQLAlchemy asyncpg URL."""
    name = f"llmserver_test_{secrets.token_hex(6)}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"no PostgreSQL server at {POSTGRES_SERVER_URL}: {exc}")
    url = make_url(POSTGRES_SERVER_URL).set(drivername="postgresql+asyncpg", database=name)
    return url.render_as_string(hide_password=False)


def drop_test_database(url: str) -> None:
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def make_postgres_database() -> Iterator[Callable[[], str]]:
    """Creates throwaway databases on demand; all are dropped at the end of the session."""
    created: list[str] = []

    def make() -> str:
        created.append(create_test_database())
        return created[-1]

    yield make
    for url in created:
        drop_test_database(url)


@pytest.fixture(scope="session")
def postgres_url(make_postgres_database: Callable[[], str]) -> str:
    """A throwaway database for this test session (``postgresql+asyncpg://`` URL)."""
    return make_postgres_database()


@pytest.fixture(scope="session")
def migrated_postgres_url(postgres_url: str) -> str:
    """The session database, migrated to head."""
    from llmserver.adapters.sql import migrate

    asyncio.run(migrate.upgrade(postgres_url))
    return postgres_url


@pytest.fixture(scope="session")
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
async def redis_pipe(redis_url: str) -> AsyncIterator[RedisPipe]:
    """The request path's Redis connection (the server's ``RedisStores`` makes one)."""
    from llmserver.adapters.redis.pipe import RedisPipe

    pipe = RedisPipe(redis_url)
    yield pipe
    await pipe.close()


# --- A live LLM Server process on the demo model ---------------------------------------

from pathlib import Path  # noqa: E402

from livesupport import (  # noqa: E402
    LiveServer,
    RedisProcess,
    close_sdk_clients,
    find_key_secrets,
    running_server,
)


@pytest.fixture(autouse=True)
def _close_sdk_clients() -> Iterator[None]:
    """The SDK clients a test made with ``livesupport.closed_after_test``, closed."""
    yield
    close_sdk_clients()


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny demo model, built once per test run (offline, deterministic).

    Under pytest-xdist every worker has a base temp dir of its own inside one shared by the
    run: the model is built there once, under a lock, and the other workers reuse it
    (``build_demo_model`` returns an identical finished build as it is)."""
    pytest.importorskip("transformers")
    from llmserver.adapters.inference.demo_model import build_demo_model

    shared = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        shared = shared.parent
    with (shared / "demo-model.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return build_demo_model(shared / "models" / "demo-tiny-llama", size="tiny")


@pytest.fixture(scope="session")
def live_server(
    tmp_path_factory: pytest.TempPathFactory, demo_model_dir: Path
) -> Iterator[LiveServer]:
    """One real server process (SQLite, in-process limiter) for the whole session."""
    root = tmp_path_factory.mktemp("live")
    with running_server(root, demo_model_dir) as server:
        yield server
    # After the whole session: no API key secret may appear in the logs or the database.
    leaks = find_key_secrets([server.log_path, *root.glob("llmserver.db*")])
    if leaks:
        pytest.fail(f"API key secrets leaked into {sorted(leaks)}")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A started ``redis-server`` of the test's own, which it may stop and start (an
    outage) without touching the shared one."""
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.stop()
