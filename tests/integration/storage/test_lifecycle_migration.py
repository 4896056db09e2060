"""Migration 0003 on data: request_logs becomes partitioned by month on PostgreSQL (a no-op
for partitioning on SQLite), completion_cache gains last_hit_at; the downgrade gives back
a plain table. No row is lost either way, ids included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Table, insert, inspect, select, text

from llmserver.adapters.sql import SqlDatabase, migrate
from llmserver.adapters.sql.models import CompletionCacheModel, RequestLogModel
from llmserver.adapters.sql.partitions import is_partition
from llmserver.domain.logs import REQUEST_ID_MAX_CHARS

LOGS: Table = RequestLogModel.__table__  # type: ignore[assignment]
CACHE: Table = CompletionCacheModel.__table__  # type: ignore[assignment]
CREATED = [
    datetime(2025, 11, 30, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2025, 12, 1, tzinfo=UTC),
    datetime(2026, 3, 14, 12, tzinfo=UTC),
    datetime(2031, 1, 1, tzinfo=UTC),  # past every partition made: the default one takes it
]


def _log(request_id: str, at: datetime) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "route": "/v1/chat/completions",
        "status": 200,
        "latency_ms": 1.5,
        "prompt_tokens": 3,
        "completion_tokens": 4,
        "stream": False,
        "created_at": at,
        "key_id": "k" * 64,
        "model": "é" * 200,
    }


def _partitions(conn: Connection) -> set[str]:
    return {n for n in inspect(conn).get_table_names() if is_partition(n)}


async def _rows(db: SqlDatabase) -> list[tuple[Any, ...]]:
    async with db.engine.connect() as conn:
        result = await conn.execute(
            select(LOGS.c.id, LOGS.c.request_id, LOGS.c.created_at, LOGS.c.model).order_by(
                LOGS.c.id
            )
        )
        return [tuple(r) for r in result]


async def test_0003_keeps_every_row_both_ways(empty_database_url: str) -> None:
    db = SqlDatabase.from_url(empty_database_url)
    postgres = db.dialect == "postgresql"
    try:
        await migrate.upgrade(empty_database_url, "0002")
        async with db.engine.begin() as conn:
            for n, at in enumerate(CREATED):
                await conn.execute(
                    insert(LOGS), [_log(f"{n}".rjust(REQUEST_ID_MAX_CHARS, "r"), at)]
                )
            await conn.execute(
                text(
                    "INSERT INTO completion_cache (key, model, response, prompt_tokens, "
                    "completion_tokens, created_at, expires_at, hit_count) VALUES "
                    "('c1', 'm', '{}', 1, 1, :at, :at, 0)"
                ),
                {"at": CREATED[0]},
            )
        before = await _rows(db)
        assert len(before) == len(CREATED)

        await migrate.upgrade(empty_database_url, "0003")
        await db.engine.dispose()
        assert await _rows(db) == before
        async with db.engine.begin() as conn:
            hit = (await conn.execute(select(CACHE.c.last_hit_at))).scalar_one()
            assert hit == CREATED[0]  # an old entry's last hit: its creation
            partitions = await conn.run_sync(_partitions)
            # New rows take ids after the old ones: the sequence came along.
            new_id = (
                await conn.execute(
                    insert(LOGS).returning(LOGS.c.id), [_log("new", datetime.now(UTC))]
                )
            ).scalar_one()
            assert new_id > before[-1][0]
            if postgres:
                default = (
                    await conn.execute(text("SELECT request_id FROM request_logs_default"))
                ).scalars()
                assert [r[-1] for r in default] == ["3"]
        if postgres:
            now = datetime.now(UTC)
            months = {f"request_logs_p{m:%Y%m}" for m in (*CREATED[:3], now)}
            months.add(f"request_logs_p{(now.replace(day=1) + timedelta(days=62)):%Y%m}")
            assert months | {"request_logs_default"} <= partitions
            assert "request_logs_p203101" not in partitions
        else:
            assert partitions == set()

        after = await _rows(db)
        await migrate.downgrade(empty_database_url, "0002")
        await db.engine.dispose()
        assert await _rows(db) == after
        async with db.engine.begin() as conn:
            assert await conn.run_sync(_partitions) == set()
            await conn.execute(insert(LOGS), [_log("after-downgrade", datetime.now(UTC))])
            if postgres:  # a plain table again, keyed by id alone
                kind = (
                    await conn.execute(
                        text("SELECT relkind::text FROM pg_class WHERE relname = 'request_logs'")
                    )
                ).scalar_one()
                assert kind == "r"
        await migrate.upgrade(empty_database_url)
    finally:
        await db.dispose()
