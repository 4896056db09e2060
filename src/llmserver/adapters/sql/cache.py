from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from llmserver.adapters.sql._paced import paced_batches
from llmserver.adapters.sql._records import cache_columns, cached_completion
from llmserver.adapters.sql._writer import TransactionWriter
from llmserver.adapters.sql._writes import CACHE_ENTRIES, CACHE_HITS
from llmserver.adapters.sql.models import CompletionCacheModel
from llmserver.domain.ports import BATCH_ROWS, CachedCompletion, CompletionCache, ModelCacheStats

_T: Table = CompletionCacheModel.__table__  # type: ignore[assignment]

MAP_CHUNK = 256
"""Entries mapped to rows per turn of the event loop. A single-process server flushes a
busy interval's misses together (1,400 at the benchmark's rate), and mapping them at once
held the loop for a millisecond, which the cache-miss p99 showed."""


def _live(key: str, now: datetime) -> Any:
    return select(_T).where(_T.c.key == key, _T.c.expires_at > now)


class SqlCompletionCache(CompletionCache):
    """The durable response cache (expired entries are invisible until purged)."""

    def __init__(self, engine: AsyncEngine, writer: TransactionWriter) -> None:
        self._engine = engine
        self._writer = writer

    async def get(self, key: str, now: datetime) -> CachedCompletion | None:
        count_hit = (
            update(_T)
            .where(_T.c.key == key)
            .values(hit_count=_T.c.hit_count + 1, last_hit_at=now)
            .returning(_T.c.hit_count)
        )
        # A miss only reads (so on SQLite it never takes the write lock); a hit, which
        # saves a whole inference, pays a second statement to count itself.
        async with self._engine.begin() as conn:
            row = (await conn.execute(_live(key, now))).one_or_none()
            if row is None:
                return None
            hits = (await conn.execute(count_hit)).scalar_one()
        return replace(cached_completion(row), hit_count=hits)

    async def peek(self, key: str, now: datetime) -> CachedCompletion | None:
        """A live entry without counting a hit (the caller counts it with ``add_hits``)."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(_live(key, now))).one_or_none()
        return None if row is None else cached_completion(row)

    async def put(self, entry: CachedCompletion) -> None:
        await self.put_many([entry])

    async def put_many(self, entries: Sequence[CachedCompletion]) -> None:
        if not entries:
            return
        rows: list[dict[str, Any]] = []
        for start in range(0, len(entries), MAP_CHUNK):
            if start:
                await asyncio.sleep(0)
            rows += [cache_columns(entry) for entry in entries[start : start + MAP_CHUNK]]
        await self._writer.run([(CACHE_ENTRIES, rows)])

    async def add_hits(self, hits: Mapping[str, int], at: datetime) -> None:
        """Count hits, the latest of them at ``at``."""
        if not hits:
            return
        rows = [{"k": key, "n": n, "at": at} for key, n in hits.items()]
        await self._writer.run([(CACHE_HITS, rows)])

    async def live_keys(self, now: datetime) -> list[str]:
        """The keys of every live entry, for an index that saves reads on misses."""
        async with self._engine.connect() as conn:
            result = await conn.execute(select(_T.c.key).where(_T.c.expires_at > now))
            return list(result.scalars())

    async def purge_expired(self, now: datetime, *, batch_rows: int = BATCH_ROWS) -> int:
        expired = select(_T.c.key).where(_T.c.expires_at <= now)
        return await self._delete_batches(expired, batch_rows)

    async def evict(self, max_rows: int, *, batch_rows: int = BATCH_ROWS) -> int:
        async with self._engine.connect() as conn:
            stored = (await conn.execute(select(func.count()).select_from(_T))).scalar_one()
        excess = stored - max_rows
        if excess <= 0:
            return 0
        coldest = select(_T.c.key).order_by(_T.c.last_hit_at, _T.c.key)
        return await self._delete_batches(coldest, batch_rows, limit=excess)

    async def stats(self, now: datetime) -> Sequence[ModelCacheStats]:
        per_model = (
            select(_T.c.model, func.count(), func.coalesce(func.sum(_T.c.hit_count), 0))
            .where(_T.c.expires_at > now)
            .group_by(_T.c.model)
            .order_by(_T.c.model)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(per_model)).all()
        return [ModelCacheStats(model, int(n), int(hits)) for model, n, hits in rows]

    async def purge(self, model: str | None = None, *, batch_rows: int = BATCH_ROWS) -> int:
        chosen = select(_T.c.key)
        if model is not None:
            chosen = chosen.where(_T.c.model == model)
        return await self._delete_batches(chosen, batch_rows)

    async def _delete_batches(self, keys: Any, batch_rows: int, limit: int | None = None) -> int:
        """Delete the rows whose key ``keys`` selects (``limit`` of them at most), one short
        transaction per ``batch_rows``: a long delete would hold SQLite's one write lock
        (or PostgreSQL's row locks) against every other writer."""
        removed = 0

        async def batch() -> tuple[int, bool]:
            nonlocal removed
            size = batch_rows if limit is None else min(batch_rows, limit - removed)
            chosen = _T.c.key.in_(keys.limit(size).scalar_subquery())
            async with self._engine.begin() as conn:
                gone = int((await conn.execute(delete(_T).where(chosen))).rowcount)
            removed += gone
            return gone, gone == size and (limit is None or removed < limit)

        return await paced_batches(batch)
