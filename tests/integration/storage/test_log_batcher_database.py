from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from llmserver.adapters.log_batcher import RequestLogBatcher
from llmserver.adapters.sql import SqlDatabase, migrate
from llmserver.domain.logs import LogQuery, RequestLog

T0 = datetime(2026, 3, 14, tzinfo=UTC)


def rows(count: int, key_id: str) -> list[RequestLog]:
    return [
        RequestLog(
            request_id=f"req-{n:04d}",
            created_at=T0 + timedelta(milliseconds=n),
            route="/v1/chat/completions",
            status=200,
            latency_ms=3.5,
            key_id=key_id,
            model="tiny",
        )
        for n in range(count)
    ]


async def stored_ids(db: SqlDatabase, key_id: str) -> list[str]:
    found, _ = await db.logs.query(LogQuery(key_id=key_id, limit=10_000))
    return sorted(r.request_id for r in found)


async def test_a_graceful_close_writes_all_1000_queued_rows(migrated_database_url: str) -> None:
    db = SqlDatabase.from_url(migrated_database_url)
    batcher = RequestLogBatcher(db.logs, flush_interval_ms=600_000, max_batch_rows=250)
    await batcher.start()

    for row in rows(1000, "graceful-close"):
        assert batcher.submit(row)
    assert batcher.queue_size == 1000

    assert await batcher.close() == 0
    try:
        assert await stored_ids(db, "graceful-close") == [f"req-{n:04d}" for n in range(1000)]
    finally:
        await db.dispose()
    assert batcher.flushed_rows == 1000


async def _admin(url: str, sql: str) -> None:
    server = make_url(url).set(drivername="postgresql", database="postgres")
    conn = await asyncpg.connect(server.render_as_string(hide_password=False))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_rows_survive_the_database_going_away_and_coming_back(
    fresh_postgres_url: str,
) -> None:
    url = fresh_postgres_url
    name = make_url(url).database
    await migrate.upgrade(url)
    db = SqlDatabase.from_url(url)
    batcher = RequestLogBatcher(
        db.logs, flush_interval_ms=5, max_batch_rows=100, retry_initial_ms=10, retry_max_ms=50
    )
    await batcher.start()
    batch = rows(1000, "outage")
    for row in batch[:100]:
        batcher.submit(row)
    while batcher.flushed_rows < 100:
        await asyncio.sleep(0.01)

    # What a restart looks like from here: live connections die, new ones are refused.
    await _admin(url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    await _admin(
        url, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    )
    for row in batch[100:]:
        batcher.submit(row)
    while batcher.flush_failures < 2:
        await asyncio.sleep(0.01)
    await _admin(url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

    assert await batcher.close() == 0
    try:
        assert await stored_ids(db, "outage") == [r.request_id for r in batch]
    finally:
        await db.dispose()
