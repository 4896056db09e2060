"""Migration 0005 on data: the rows already logged and rolled up cost 0, new rows keep
their cost up to the largest legal one, and the downgrade drops the two columns and no row."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

from sqlalchemy import column, insert, table

from integration.storage.schema_probe import column_names, row_count
from llmserver.adapters.sql import SqlDatabase, migrate
from llmserver.adapters.sql._records import columns
from llmserver.domain.logs import DailyUsage, RequestLog
from llmserver.domain.pricing import MAX_PRICE_PER_MTOK, Prices, price_per_token

DAY = date(2026, 11, 30)
AT = datetime(2026, 11, 30, 12, tzinfo=UTC)
KEY = "k" * 64
MODEL = "é" * 200
BEFORE = RequestLog(
    request_id="before-0005",
    created_at=AT,
    route="/v1/chat/completions",
    status=200,
    latency_ms=1.5,
    key_id=KEY,
    model=MODEL,
    prompt_tokens=3,
    completion_tokens=4,
)
LOG = {
    name: value
    for name, value in columns(BEFORE).items()
    # Columns of later migrations too: 0009's deployment and attempts, 0011's team_id.
    if name not in ("cost_picodollars", "deployment", "attempts", "team_id")
}
"""A row as 0004 holds it."""
ROLLED = {
    "day": date(2026, 11, 29),
    "key_id": KEY,
    "model": MODEL,
    "requests": 5,
    "prompt_tokens": 50,
    "completion_tokens": 60,
    "cache_hits": 1,
    "errors": 0,
}
DEAREST = price_per_token(MAX_PRICE_PER_MTOK)
MOST = Prices(DEAREST, DEAREST).cost(2**31 - 1, 2**31 - 1)


async def _counts(db: SqlDatabase) -> tuple[int, int]:
    return await row_count(db, "request_logs"), await row_count(db, "usage_daily")


async def test_0005_costs_old_rows_nothing_and_its_downgrade_keeps_every_row(
    empty_database_url: str,
) -> None:
    db = SqlDatabase.from_url(empty_database_url)
    span = (date(2026, 11, 29), date(2026, 12, 1))
    try:
        await migrate.upgrade(empty_database_url, "0004")
        async with db.engine.begin() as conn:
            await conn.execute(insert(table("request_logs", *map(column, LOG))).values(LOG))
            await conn.execute(insert(table("usage_daily", *map(column, ROLLED))).values(ROLLED))

        # To the head, through 0005: the stores read the head's columns.
        await migrate.upgrade(empty_database_url)
        await db.engine.dispose()
        assert list(await db.retention.daily_usage(*span)) == [
            DailyUsage(ROLLED["day"], KEY, MODEL, 5, 50, 60, cache_hits=1),  # type: ignore[arg-type]
            DailyUsage(DAY, KEY, MODEL, 1, 3, 4),
        ]
        # Written as 0005 holds it: the log writer also names the columns of later migrations.
        after = replace(BEFORE, request_id="after-0005", cost_picodollars=MOST)
        row = {n: v for n, v in columns(after).items() if n not in ("deployment", "attempts")}
        row.pop("team_id")
        async with db.engine.begin() as conn:
            await conn.execute(insert(table("request_logs", *map(column, row))).values(row))
        usage = await db.retention.daily_usage(*span)
        assert usage[1] == DailyUsage(DAY, KEY, MODEL, 2, 6, 8, cost_picodollars=MOST)

        await migrate.downgrade(empty_database_url, "0004")
        await db.engine.dispose()
        for name in ("request_logs", "usage_daily"):
            assert "cost_picodollars" not in await column_names(db, name)
        assert await _counts(db) == (2, 1)

        await migrate.upgrade(empty_database_url)
        await db.engine.dispose()
        # The costs went with the column: every row is back at 0.
        assert [u.cost_picodollars for u in await db.retention.daily_usage(*span)] == [0, 0]
        assert await _counts(db) == (2, 1)
    finally:
        await db.dispose()
