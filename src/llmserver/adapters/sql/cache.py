from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Table, delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from llmserver.adapters.sql._writer import TransactionWriter
from llmserver.adapters.sql._writes import CACHE_ENTRIES, CACHE_HITS
from llmserver.adapters.sql.models import CompletionCacheModel
from llmserver.domain.inference import FinishReason
from llmserver.domain.ports import CachedCompletion

_T: Table = CompletionCacheModel.__table__  # type: ignore[assignment]


def _to_domain(row: Row[Any]) -> CachedCompletion:
    return CachedCompletion(
        key=row.key,
        model=row.model,
        text=row.response["text"],
        finish_reason=FinishReason(row.response["finish_reason"]),
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        created_at=row.created_at,
        expires_at=row.expires_at,
        hit_count=row.hit_count,
    )


def _live(key: str, now: datetime) -> Any:
    return select(_T).where(_T.c.key == key, _T.c.expires_at > now)


class SqlCompletionCache:
    """The durable response cache (expired entries are invisible until purged)."""

    def __init__(self, engine: AsyncEngine, writer: TransactionWriter) -> None:
        self._engine = engine
        self._writer = writer

    async def get(self, key: str, now: datetime) -> CachedCompletion | None:
        count_hit = (
            update(_T)
            .where(_T.c.key == key)
            .values(hit_count=_T.c.hit_count + 1)
            .returning(_T.c.hit_count)
        )
        # A miss only reads (so on SQLite it never takes the write lock); a hit, which
        # saves a whole inference, pays a second statement to count itself.
        async with self._engine.begin() as conn:
            row = (await conn.execute(_live(key, now))).one_or_none()
            if row is None:
                return None
            hits = (await conn.execute(count_hit)).scalar_one()
        return replace(_to_domain(row), hit_count=hits)

    async def peek(self, key: str, now: datetime) -> CachedCompletion | None:
        """A live entry without counting a hit (the caller counts it with ``add_hits``)."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(_live(key, now))).one_or_none()
        return None if row is None else _to_domain(row)

    async def put(self, entry: CachedCompletion) -> None:
        await self.put_many([entry])

    async def put_many(self, entries: Sequence[CachedCompletion]) -> None:
        if not entries:
            return
        rows = [
            {
                "key": entry.key,
                "model": entry.model,
                "response": {"text": entry.text, "finish_reason": entry.finish_reason.value},
                "prompt_tokens": entry.prompt_tokens,
                "completion_tokens": entry.completion_tokens,
                "created_at": entry.created_at,
                "expires_at": entry.expires_at,
                "hit_count": entry.hit_count,
            }
            for entry in entries
        ]
        await self._writer.run([(CACHE_ENTRIES, rows)])

    async def add_hits(self, hits: Mapping[str, int]) -> None:
        if not hits:
            return
        await self._writer.run([(CACHE_HITS, [{"k": key, "n": n} for key, n in hits.items()])])

    async def live_keys(self, now: datetime) -> list[str]:
        """The keys of every live entry, for an index that saves reads on misses."""
        async with self._engine.connect() as conn:
            result = await conn.execute(select(_T.c.key).where(_T.c.expires_at > now))
            return list(result.scalars())

    async def purge_expired(self, now: datetime) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(_T).where(_T.c.expires_at <= now))
        return result.rowcount
