"""PostgreSQL's monthly request-log partitions, as the app makes and drops them: rows
written before their month's partition existed wait in the default partition and move into
it when it is made; replicas making or dropping partitions at once take turns; a dropped
month's usage is in the roll-up."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import DBAPIError

from llmserver.adapters.log_batcher import RequestLogBatcher
from llmserver.adapters.sql import SqlDatabase, migrate
from llmserver.adapters.sql.partitions import is_partition
from llmserver.domain.logs import DailyUsage, RequestLog

pytestmark = pytest.mark.postgres

MARCH = datetime(2026, 3, 10, 12, tzinfo=UTC)


def _rows(count: int, start: datetime) -> list[RequestLog]:
    return [
        RequestLog(
            request_id=f"req-{n}",
            created_at=start + timedelta(hours=8 * n),
            route="/v1/completions",
            status=200,
            latency_ms=1.0,
            key_id="key",
            model="tiny",
            prompt_tokens=2,
            completion_tokens=3,
        )
        for n in range(count)
    ]


def _partitions(conn: Connection) -> set[str]:
    return {n for n in inspect(conn).get_table_names() if is_partition(n)}


async def _count(db: SqlDatabase, table: str) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


async def test_partitions_are_made_ahead_filled_from_default_and_dropped_whole(
    fresh_postgres_url: str,
) -> None:
    url = fresh_postgres_url
    await migrate.upgrade(url)
    db, other = SqlDatabase.from_url(url), SqlDatabase.from_url(url)
    try:
        # The log writer's own path: rows of a month without a partition are not lost.
        batcher = RequestLogBatcher(db.logs, flush_interval_ms=10, max_batch_rows=50)
        await batcher.start()
        for row in _rows(100, MARCH):
            assert batcher.submit(row)
        assert await batcher.close() == 0
        assert await _count(db, "request_logs_default") == 100

        # Two replicas at once: each month is made once, and nothing fails.
        made = await asyncio.gather(
            db.retention.prepare(MARCH, 1), other.retention.prepare(MARCH, 1)
        )
        assert sorted(n for names in made for n in names) == [
            "request_logs_p202603",
            "request_logs_p202604",
        ]
        assert await _count(db, "request_logs_default") == 0
        assert await _count(db, "request_logs_p202603") == 65  # 8 hours apart from March 10, 12:00
        assert await _count(db, "request_logs_p202604") == 35
        assert await db.retention.prepare(MARCH, 1) == []

        usage = await db.retention.daily_usage(date(2026, 3, 1), date(2026, 5, 1))
        removed = await asyncio.gather(
            db.retention.expire(datetime(2026, 4, 2, tzinfo=UTC)),
            other.retention.expire(datetime(2026, 4, 2, tzinfo=UTC)),
        )
        # March went whole; April's rows wait for April to end.
        assert sorted(removed) == [0, 65]
        async with db.engine.connect() as conn:
            left = await conn.run_sync(_partitions)
        assert "request_logs_p202603" not in left
        assert {"request_logs_p202604", "request_logs_default"} <= left
        assert await db.retention.daily_usage(date(2026, 3, 1), date(2026, 5, 1)) == usage
        assert usage[0] == DailyUsage(date(2026, 3, 10), "key", "tiny", 2, 4, 6)
    finally:
        await db.dispose()
        await other.dispose()


async def test_dropping_a_partition_waits_at_most_the_lock_timeout(fresh_postgres_url: str) -> None:
    """A long reader of request_logs holds off the drop's exclusive lock; the drop gives up
    after ``LOCK_TIMEOUT`` (the next round retries) instead of queueing every insert."""
    await migrate.upgrade(fresh_postgres_url)
    db = SqlDatabase.from_url(fresh_postgres_url)
    try:
        await db.retention.prepare(MARCH, 0)
        await db.logs.write(_rows(3, MARCH))
        async with db.engine.connect() as reader:
            await reader.execute(text("SELECT count(*) FROM request_logs"))  # holds its lock
            started = time.monotonic()
            with pytest.raises(DBAPIError, match="lock timeout"):
                await db.retention.expire(datetime(2026, 5, 1, tzinfo=UTC))
            assert time.monotonic() - started < 5 + 3
        # The reader gone, the next round drops it, its rows rolled up once.
        assert await db.retention.expire(datetime(2026, 5, 1, tzinfo=UTC)) == 3
        usage = await db.retention.daily_usage(date(2026, 3, 1), date(2026, 4, 1))
        assert [u.requests for u in usage] == [2, 1]
    finally:
        await db.dispose()
