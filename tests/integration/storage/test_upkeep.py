"""The server's background upkeep on a real database: the settings decide what a round
does (nothing but the purge and the partitions when they are unset)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from llmserver.adapters.sql import SqlDatabase, migrate
from llmserver.adapters.sql.models import CompletionCacheModel
from llmserver.adapters.write_behind import WriteBehindCompletionCache
from llmserver.app.maintenance import Upkeep
from llmserver.domain.inference import FinishReason
from llmserver.domain.logs import RequestLog
from llmserver.domain.ports import CachedCompletion

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


class Clock:
    def now(self) -> datetime:
        return NOW

    def monotonic(self) -> float:
        return 0.0


def _entry(key: str, age_s: int, ttl_s: int) -> CachedCompletion:
    created = NOW - timedelta(seconds=age_s)
    return CachedCompletion(
        key, "tiny", "text", 1, 1, FinishReason.STOP, created, created + timedelta(seconds=ttl_s)
    )


def _log(request_id: str, at: datetime) -> RequestLog:
    return RequestLog(
        request_id=request_id, created_at=at, route="/v1/completions", status=200, latency_ms=1.0
    )


@pytest.mark.parametrize(("max_rows", "retention_days"), [(None, None), (4, 30)])
async def test_a_round_does_what_the_settings_ask(
    empty_database_url: str, max_rows: int | None, retention_days: int | None
) -> None:
    # A database of its own: retention removes every old row, other tests' too.
    await migrate.upgrade(empty_database_url)
    db = SqlDatabase.from_url(empty_database_url)
    cache = WriteBehindCompletionCache(db.cache, index=False)
    upkeep = Upkeep(cache, db.retention, Clock(), max_rows, retention_days)
    try:
        for n in range(3):
            await cache.put(_entry(f"expired-{n}", age_s=100, ttl_s=50))
        for n in range(10):
            await cache.put(_entry(f"live-{n}", age_s=100 - n, ttl_s=3600))
        old, recent = NOW - timedelta(days=31), NOW - timedelta(days=29)
        await db.logs.write([_log("old", old), _log("recent", recent)])

        trimmed = await upkeep.cache_round()
        expired = await upkeep.log_round()

        async with db.engine.connect() as conn:
            count = select(func.count()).select_from(CompletionCacheModel.__table__)
            left = (await conn.execute(count)).scalar_one()
        kept = [r.request_id async for r in db.logs.export(old)]
        if max_rows is None:
            assert left == 10
            assert (trimmed, expired) == ((3, 0), 0)
            assert kept == ["old", "recent"]
        else:
            assert left == 4
            assert (trimmed, expired) == ((3, 6), 1)
            # The newest entries stay (never hit: their creation orders them).
            assert [await cache.get(f"live-{n}", NOW) is not None for n in range(10)] == [
                False
            ] * 6 + [True] * 4
            assert kept == ["recent"]
    finally:
        await db.dispose()
