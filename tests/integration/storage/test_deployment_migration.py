"""Migration 0009 on data: rows already logged have no deployment, new rows keep theirs
up to the longest legal one, and the downgrade drops the two columns and no row."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import column, insert, table

from integration.storage.schema_probe import row_count
from llmserver.adapters.sql import SqlDatabase, migrate
from llmserver.adapters.sql._records import columns
from llmserver.domain.logs import LogQuery, RequestLog
from llmserver.domain.registry import SERVED_BY_MAX_CHARS

AT = datetime(2026, 11, 30, 12, tzinfo=UTC)
BEFORE = RequestLog(
    request_id="before-0009",
    created_at=AT,
    route="/v1/chat/completions",
    status=200,
    latency_ms=1.5,
    key_id="k" * 64,
    model="chat",
    prompt_tokens=3,
    completion_tokens=4,
)
LOG = {
    name: v
    for name, v in columns(BEFORE).items()
    if name not in ("deployment", "attempts", "team_id")  # 0009's and 0011's
}
"""A row as 0008 holds it."""
AFTER = replace(
    BEFORE,
    request_id="after-0009",
    created_at=AT.replace(hour=13),
    deployment="é" * SERVED_BY_MAX_CHARS,
    attempts=3,
)


async def test_0009_leaves_old_rows_unrouted_and_its_downgrade_keeps_every_row(
    empty_database_url: str,
) -> None:
    db = SqlDatabase.from_url(empty_database_url)
    try:
        await migrate.upgrade(empty_database_url, "0008")
        async with db.engine.begin() as conn:
            await conn.execute(insert(table("request_logs", *map(column, LOG))).values(LOG))

        # To the head, through 0009: the stores read the head's columns.
        await migrate.upgrade(empty_database_url)
        await db.engine.dispose()
        await db.logs.write([AFTER])
        rows, _ = await db.logs.query(LogQuery())
        assert list(rows) == [AFTER, BEFORE]

        await migrate.downgrade(empty_database_url, "0008")
        await db.engine.dispose()
        assert await row_count(db, "request_logs") == 2

        await migrate.upgrade(empty_database_url)
        await db.engine.dispose()
        rows, _ = await db.logs.query(LogQuery())
        assert [(r.deployment, r.attempts) for r in rows] == [(None, None), (None, None)]
    finally:
        await db.dispose()
