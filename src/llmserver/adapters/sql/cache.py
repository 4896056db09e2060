from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Table, delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from llmserver.adapters.sql._dialect import upsert_insert
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


class SqlCompletionCache:
    """The durable response cache (expired entries are invisible until purged)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def get(self, key: str, now: datetime) -> CachedCompletion | None:
        live = select(_T).where(_T.c.key == key, _T.c.expires_at > now)
        count_hit = (
            update(_T)
            .where(_T.c.key == key)
            .values(hit_count=_T.c.hit_count + 1)
            .returning(_T.c.hit_count)
        )
        # A miss only reads (so on SQLite it never takes the write lock); a hit, which
        # saves a whole inference, pays a second statement to count itself.
        async with self._engine.begin() as conn:
            row = (await conn.execute(live)).one_or_none()
            if row is None:
                return None
            hits = (await conn.execute(count_hit)).scalar_one()
        return replace(_to_domain(row), hit_count=hits)

    async def put(self, entry: CachedCompletion) -> None:
        values: dict[str, Any] = {
            "model": entry.model,
            "response": {"text": entry.text, "finish_reason": entry.finish_reason.value},
            "prompt_tokens": entry.prompt_tokens,
            "completion_tokens": entry.completion_tokens,
            "created_at": entry.created_at,
            "expires_at": entry.expires_at,
            "hit_count": entry.hit_count,
        }
        stmt = upsert_insert(
            self._engine.dialect.name, _T, key=entry.key, **values
        ).on_conflict_do_update(index_elements=[_T.c.key], set_=values)
        async with self._engine.begin() as conn:
            await conn.execute(stmt)

    async def purge_expired(self, now: datetime) -> int:
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(_T).where(_T.c.expires_at <= now))
        return result.rowcount
