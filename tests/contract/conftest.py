"""Adapters under contract: every storage port fixture is parametrised over its adapters,
so each suite is written once and runs against memory, SQLite, Postgres and Redis."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy import delete

from llmserver.adapters.key_cache import CachedKeyStore
from llmserver.adapters.memory import (
    MemoryAuditLog,
    MemoryCompletionCache,
    MemoryHotCache,
    MemoryKeyStore,
    MemoryParallelStore,
    MemoryRateLimitStore,
    MemoryRequestLogStore,
    MemoryTeamStore,
    MemoryTokenRateStore,
    MemoryUsageStore,
)
from llmserver.adapters.redis import (
    RedisHotCache,
    RedisParallelStore,
    RedisRateLimitStore,
    RedisTokenRateStore,
    RedisUsageStore,
)
from llmserver.adapters.sql import SqlDatabase, SqlRequestLogStore, migrate
from llmserver.adapters.sql.models import metadata
from llmserver.adapters.sql.usage import SqlUsageStore
from llmserver.adapters.team_cache import CachedTeamStore
from llmserver.adapters.write_behind import WriteBehindCompletionCache, WriteBehindUsageStore
from llmserver.domain.ports import (
    AuditLog,
    CompletionCache,
    HotCache,
    KeyStore,
    ParallelStore,
    RateLimitStore,
    RequestLogRetention,
    TeamStore,
    TokenRateStore,
    UsageStore,
)

SQL = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
DURABLE = ["memory", *SQL]
FAST = ["memory", pytest.param("redis", marks=pytest.mark.redis)]


@pytest.fixture(scope="session")
def migrated_sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("sqlite") / "contract.db"
    url = f"sqlite+aiosqlite:///{path}"
    asyncio.run(migrate.upgrade(url))
    return url


async def _emptied(url: str) -> AsyncIterator[SqlDatabase]:
    db = SqlDatabase.from_url(url)
    async with db.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            if table.name != "roles":
                await conn.execute(delete(table))
    yield db
    await db.dispose()


@pytest.fixture
async def sqlite_db(migrated_sqlite_url: str) -> AsyncIterator[SqlDatabase]:
    async for db in _emptied(migrated_sqlite_url):
        yield db


@pytest.fixture
async def sqlite_writer_process_db(migrated_sqlite_url: str) -> AsyncIterator[SqlDatabase]:
    """The SQLite database with its background writes in a writer process, as the server
    runs it."""
    async for db in _emptied(migrated_sqlite_url):
        await db.dispose()
        with_process = SqlDatabase.from_url(migrated_sqlite_url, writer_process=True)
        yield with_process
        await with_process.dispose()


@pytest.fixture
async def postgres_db(migrated_postgres_url: str) -> AsyncIterator[SqlDatabase]:
    async for db in _emptied(migrated_postgres_url):
        yield db


def _sql_db(request: pytest.FixtureRequest) -> SqlDatabase:
    """The emptied database the test's parameter names ("sqlite" or "postgres")."""
    db: SqlDatabase = request.getfixturevalue(f"{request.param}_db")
    return db


@pytest.fixture
def redis_prefix() -> str:
    return f"llmtest:{secrets.token_hex(6)}:"


@pytest.fixture
async def redis_client(redis_url: str, redis_prefix: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    keys = [key async for key in client.scan_iter(match=f"{redis_prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture(params=[*DURABLE, "cached-sqlite"])
def key_store(request: pytest.FixtureRequest) -> KeyStore:
    if request.param == "memory":
        return MemoryKeyStore()
    if request.param == "cached-sqlite":
        # The cache in front of a real store must keep the store's contract.
        return CachedKeyStore(request.getfixturevalue("sqlite_db").keys, ttl_s=60)
    return _sql_db(request).keys


@pytest.fixture(params=[*DURABLE, "cached-sqlite"])
def team_stores(request: pytest.FixtureRequest) -> tuple[TeamStore, KeyStore]:
    """A team store and a key store on the same storage (a key names its team)."""
    if request.param == "memory":
        return MemoryTeamStore(), MemoryKeyStore()
    if request.param == "cached-sqlite":
        db = request.getfixturevalue("sqlite_db")
        return CachedTeamStore(db.teams, ttl_s=60), db.keys
    db = _sql_db(request)
    return db.teams, db.keys


@pytest.fixture(params=["quota", "budget"])
def ledger(request: pytest.FixtureRequest) -> str:
    """Which ledger a usage store holds: the token quota's or the budgets' (nanodollars,
    in a table and Redis keys of its own, through the same adapters)."""
    return str(request.param)


REDIS_LEDGERS = {"quota": "usage", "budget": "budget", "model_quota": "model-usage"}
"""Each ledger's Redis key namespace, as the composition root names it. ``model_quota`` (the
per-model quotas', whose ids are ``quota.model_ledger_id``s) has contract tests of its own."""


def _ledger_of(database: SqlDatabase, ledger: str) -> SqlUsageStore:
    stores = {"quota": database.usage, "budget": database.budget}
    return stores.get(ledger, database.model_quota)


@pytest.fixture(
    params=[
        *DURABLE,
        "write-behind-sqlite",
        pytest.param("redis-postgres", marks=[pytest.mark.redis, pytest.mark.postgres]),
    ]
)
def usage_store(request: pytest.FixtureRequest, ledger: str) -> UsageStore:
    if request.param == "memory":
        return MemoryUsageStore()
    if request.param == "write-behind-sqlite":
        # The single-process ledger in front of a real store must keep the contract.
        return WriteBehindUsageStore(_ledger_of(request.getfixturevalue("sqlite_db"), ledger))
    if request.param == "redis-postgres":
        # The replicas' ledger, written behind to the database they share.
        return RedisUsageStore(
            request.getfixturevalue("redis_client"),
            _ledger_of(request.getfixturevalue("postgres_db"), ledger),
            policy="fail_closed",
            prefix=request.getfixturevalue("redis_prefix"),
            ledger=REDIS_LEDGERS[ledger],
            pipe=request.getfixturevalue("redis_pipe"),
        )
    return _ledger_of(_sql_db(request), ledger)


@pytest.fixture(params=[*DURABLE, "sqlite_writer_process"])
def log_store(request: pytest.FixtureRequest) -> MemoryRequestLogStore | SqlRequestLogStore:
    if request.param == "memory":
        return MemoryRequestLogStore()
    return _sql_db(request).logs


@pytest.fixture(params=DURABLE)
def log_storage(
    request: pytest.FixtureRequest,
) -> tuple[MemoryRequestLogStore | SqlRequestLogStore, RequestLogRetention]:
    """A request-log store and the retention over the same rows."""
    if request.param == "memory":
        store = MemoryRequestLogStore()
        return store, store
    db = _sql_db(request)
    return db.logs, db.retention


@pytest.fixture(
    params=[
        *DURABLE,
        "sqlite_writer_process",
        "write-behind-sqlite",
        "indexed-write-behind-sqlite",
    ]
)
def completion_cache(request: pytest.FixtureRequest) -> CompletionCache:
    if request.param == "memory":
        return MemoryCompletionCache()
    if request.param.endswith("write-behind-sqlite"):
        durable = request.getfixturevalue("sqlite_db").cache
        return WriteBehindCompletionCache(durable, index=request.param.startswith("indexed"))
    return _sql_db(request).cache


@pytest.fixture(params=FAST)
def rate_limit_store(request: pytest.FixtureRequest) -> RateLimitStore:
    if request.param == "memory":
        return MemoryRateLimitStore()
    return RedisRateLimitStore(
        request.getfixturevalue("redis_pipe"), prefix=request.getfixturevalue("redis_prefix")
    )


@pytest.fixture(params=FAST)
def token_rate_store(request: pytest.FixtureRequest) -> TokenRateStore:
    if request.param == "memory":
        return MemoryTokenRateStore()
    return RedisTokenRateStore(
        request.getfixturevalue("redis_pipe"),
        prefix=request.getfixturevalue("redis_prefix") + "tpm:",
    )


@pytest.fixture(params=FAST)
def parallel_store(request: pytest.FixtureRequest) -> ParallelStore:
    if request.param == "memory":
        return MemoryParallelStore()
    # One replica counts its own slots with or without its lease (started in the
    # replicas' tests, tests/integration/storage/test_redis_limits.py).
    return RedisParallelStore(
        request.getfixturevalue("redis_client"),
        request.getfixturevalue("redis_pipe"),
        prefix=request.getfixturevalue("redis_prefix"),
    )


@pytest.fixture(params=FAST)
def hot_cache(request: pytest.FixtureRequest) -> HotCache:
    if request.param == "memory":
        return MemoryHotCache()
    return RedisHotCache(
        request.getfixturevalue("redis_client"),
        prefix=request.getfixturevalue("redis_prefix"),
        pipe=request.getfixturevalue("redis_pipe"),
    )


@pytest.fixture(params=DURABLE)
def audit_log(request: pytest.FixtureRequest) -> AuditLog:
    if request.param == "memory":
        return MemoryAuditLog()
    return _sql_db(request).audit
