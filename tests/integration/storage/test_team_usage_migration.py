"""Migration 0011 on the request log and its roll-up: rows from before have no team, rows
after it keep the longest team id through logging and retention's roll-up, and the
downgrade sums a day's roll-up rows of a key and model over their teams, losing no usage."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import column, insert, select, table

from llmserver.adapters.sql import SqlDatabase, migrate
from llmserver.adapters.sql._records import columns
from llmserver.domain.logs import DailyUsage, RequestLog

DAY = date(2026, 11, 30)
AT = datetime(2026, 11, 30, 12, tzinfo=UTC)
KEY = "k" * 64
MODEL = "é" * 200
TEAMS = ("a" * 32, "b" * 32)
BEFORE = RequestLog(
    request_id="before-0011",
    created_at=AT,
    route="/v1/chat/completions",
    status=200,
    latency_ms=1.5,
    key_id=KEY,
    model=MODEL,
    prompt_tokens=3,
    completion_tokens=4,
    cost_picodollars=7,
)
LOG = {n: v for n, v in columns(BEFORE).items() if n != "team_id"}
"""A row as 0010 holds it."""
COUNTS = ("requests", "prompt_tokens", "completion_tokens", "cache_hits", "errors")
ROLLED = {"day": DAY - timedelta(days=1), "key_id": KEY, "model": MODEL, "cost_picodollars": 9}
ROLLED |= dict(zip(COUNTS, (5, 50, 60, 1, 0), strict=True))


async def test_0011_gives_old_rows_no_team_and_its_downgrade_sums_over_teams(
    empty_database_url: str,
) -> None:
    db = SqlDatabase.from_url(empty_database_url)
    span = (DAY - timedelta(days=1), DAY + timedelta(days=1))
    try:
        await migrate.upgrade(empty_database_url, "0010")
        async with db.engine.begin() as conn:
            await conn.execute(insert(table("request_logs", *map(column, LOG))).values(LOG))
            await conn.execute(insert(table("usage_daily", *map(column, ROLLED))).values(ROLLED))

        await migrate.upgrade(empty_database_url, "0011")
        await db.engine.dispose()
        old = [(u.day, u.team_id, u.requests) for u in await db.retention.daily_usage(*span)]
        assert old == [(DAY - timedelta(days=1), None, 5), (DAY, None, 1)]
        # The key in two teams the same day: a row per team, live and rolled up alike.
        await db.logs.write(
            [replace(BEFORE, request_id=f"in-{team}", team_id=team) for team in TEAMS]
        )
        by_team = await db.retention.daily_usage(*span, team_id=TEAMS[1])
        assert by_team == [DailyUsage(DAY, KEY, MODEL, 1, 3, 4, 0, 0, 7, team_id=TEAMS[1])]
        assert await db.retention.expire(AT + timedelta(seconds=1)) == 3
        assert [(u.team_id, u.requests) for u in await db.retention.daily_usage(*span)][1:] == [
            (None, 1),
            (TEAMS[0], 1),
            (TEAMS[1], 1),
        ]

        await migrate.downgrade(empty_database_url, "0010")
        await db.engine.dispose()
        async with db.engine.connect() as conn:
            names = ("day", "key_id", "model", *COUNTS, "cost_picodollars")
            rows = (await conn.execute(select(table("usage_daily", *map(column, names))))).all()
        summed = sorted((str(r.day), r.requests, r.prompt_tokens, r.cost_picodollars) for r in rows)
        assert summed == [(str(DAY - timedelta(days=1)), 5, 50, 9), (str(DAY), 3, 9, 21)]

        await migrate.upgrade(empty_database_url)
        await db.engine.dispose()
        usage = await db.retention.daily_usage(*span)
        assert [(u.team_id, u.requests, u.cost_picodollars) for u in usage] == [
            (None, 5, 9),
            (None, 3, 21),
        ]
    finally:
        await db.dispose()
