from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from structlog.testing import capture_logs

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
    await asyncio.wait_for(_drained(batcher), 10)

    # What a restart looks like from here: live connections die, new ones are refused.
    await _admin(url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
    await _admin(
        url, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    )
    with capture_logs() as logged:
        for row in batch[100:]:
            batcher.submit(row)
        while sum(e["event"] == "request_log_flush_failed" for e in logged) < 2:
            await asyncio.sleep(0.01)
    await _admin(url, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

    assert await batcher.close() == 0
    try:
        assert await stored_ids(db, "outage") == [r.request_id for r in batch]
    finally:
        await db.dispose()


async def _drained(batcher: RequestLogBatcher) -> None:
    while batcher.queue_size:
        await asyncio.sleep(0.01)


def _bad_rows(url: str) -> dict[int, RequestLog]:
    """Rows the database refuses, by position in the batch: a NULL in a NOT NULL column
    everywhere, and on PostgreSQL what SQLite lets through (too long, a NUL character)."""
    bad = {0: RequestLog("null-route", T0, None, 200, 1.0)}  # type: ignore[arg-type]
    if make_url(url).get_backend_name() == "postgresql":
        bad[137] = RequestLog("r" * 129, T0, "/v1/completions", 200, 1.0)
        bad[138] = RequestLog("nul-body", T0, "/v1/completions", 200, 1.0, body="a\x00b")
        bad[299] = RequestLog("long-model", T0, "/v1/completions", 200, 1.0, model="m" * 201)
    return bad


@pytest.mark.parametrize("writer_process", [False, True], ids=["inline", "writer-process"])
async def test_a_mixed_batch_writes_every_good_row_and_sets_the_bad_ones_aside(
    migrated_database_url: str, writer_process: bool
) -> None:
    db = SqlDatabase.from_url(migrated_database_url, writer_process=writer_process)
    batcher = RequestLogBatcher(
        db.logs, flush_interval_ms=600_000, max_batch_rows=300, retry_initial_ms=10
    )
    await batcher.start()
    # The Postgres database is the session's: key ids of this test's own.
    good = rows(300, f"mixed-{writer_process}")
    bad = _bad_rows(migrated_database_url)
    mixed = [bad.get(n, row) for n, row in enumerate(good)]
    later = rows(300, f"later-{writer_process}")
    try:
        with capture_logs() as logged:
            for row in mixed:
                assert batcher.submit(row)
            await asyncio.wait_for(_drained(batcher), 10)
            for row in later:  # the stream goes on after the bad rows
                assert batcher.submit(row)
            assert await batcher.close(timeout_s=10) == 0
        expected = sorted(r.request_id for n, r in enumerate(good) if n not in bad)
        assert await stored_ids(db, f"mixed-{writer_process}") == expected
        assert await stored_ids(db, f"later-{writer_process}") == [r.request_id for r in later]
    finally:
        await db.dispose()
    assert batcher.dead_lettered_rows == len(bad)
    assert not [e for e in logged if e["event"] == "request_log_flush_failed"]
    dead = [e for e in logged if e["event"] == "rows_dead_lettered"]
    assert sorted(i for e in dead for i in e["ids"]) == sorted(r.request_id for r in bad.values())
    assert all(e["store"] == "request_logs" and e["error"] for e in dead)
