"""Background upkeep of what the database stores, so that it does not grow without bound.

Two loops, started by ``lifecycle``:

* the completion cache's: expired entries purged, then, with ``LLMSERVER_CACHE_MAX_ROWS``,
  the least recently hit evicted down to the cap; both in bounded batches;
* the request log's: on PostgreSQL, this month's partition and the next ones made ahead of
  time, then, with ``LLMSERVER_LOG_RETENTION_DAYS``, rows older than the window rolled up
  and removed (see ``RequestLogRetention``).

They run every interval, the first an interval after start: not at start, where they
would compete with the model loads and the first requests, on every replica of a rolling
restart at once (the migration has made this month's partition and the next ones; a row of
a month without one lands in the default partition, which the next round empties into it).
A failure (the database restarting) is logged and the next round tries again. Nothing here
runs on the request path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from llmserver.domain.ports import Clock, CompletionCache, RequestLogRetention

log = structlog.get_logger("llmserver")

CACHE_INTERVAL_S = 600.0
LOG_INTERVAL_S = 3_600.0
MONTHS_AHEAD = 2
"""Partitions made ahead of the current month: two rounds of the hourly loop could fail
for a whole month before a row lands in the default partition."""


@dataclass(frozen=True, slots=True)
class Upkeep:
    cache: CompletionCache
    logs: RequestLogRetention
    clock: Clock
    cache_max_rows: int | None
    log_retention_days: int | None

    async def cache_round(self) -> tuple[int, int]:
        """Returns the entries purged (expired) and evicted (over the cap)."""
        now = self.clock.now()
        purged = await self.cache.purge_expired(now)
        evicted = 0
        if self.cache_max_rows is not None:
            evicted = await self.cache.evict(self.cache_max_rows)
        if purged or evicted:
            log.info("cache_trimmed", expired=purged, evicted=evicted)
        return purged, evicted

    async def log_round(self) -> int:
        """Returns the rows expired."""
        now = self.clock.now()
        created = await self.logs.prepare(now, MONTHS_AHEAD)
        if created:
            log.info("request_log_partitions_created", partitions=list(created))
        cutoff = retention_cutoff(now, self.log_retention_days)
        if cutoff is None:
            return 0
        removed = await self.logs.expire(cutoff)
        if removed:
            log.info("request_logs_expired", rows=removed, before=cutoff.isoformat())
        return removed

    def tasks(self) -> list[asyncio.Task[None]]:
        return [
            asyncio.create_task(_every(CACHE_INTERVAL_S, "cache", self.cache_round)),
            asyncio.create_task(_every(LOG_INTERVAL_S, "request_log", self.log_round)),
        ]


def retention_cutoff(now: datetime, days: int | None) -> datetime | None:
    """Rows created before this are expired; ``None``: they are kept forever."""
    return None if days is None else now - timedelta(days=days)


async def _every(interval_s: float, name: str, work: Callable[[], Awaitable[object]]) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await work()
        except Exception as exc:  # the database may be restarting; try again next round
            log.warning(f"{name}_upkeep_failed", error=f"{type(exc).__name__}: {exc}")
