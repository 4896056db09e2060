from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from llmserver.domain.ports import (
    BATCH_ROWS,
    CachedCompletion,
    CompletionCache,
    HotCache,
    ModelCacheStats,
)


class MemoryCompletionCache(CompletionCache):
    """The durable-cache port kept in process memory (lost on restart)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: OrderedDict[str, CachedCompletion] = OrderedDict()
        self._max = max_entries

    async def get(self, key: str, now: datetime) -> CachedCompletion | None:
        entry = self._entries.get(key)
        if entry is None or entry.expires_at <= now:
            return None
        entry = replace(entry, hit_count=entry.hit_count + 1)
        self._entries[key] = entry
        self._entries.move_to_end(key)
        return entry

    async def put(self, entry: CachedCompletion) -> None:
        self._entries[entry.key] = entry
        self._entries.move_to_end(entry.key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def purge_expired(self, now: datetime, *, batch_rows: int = BATCH_ROWS) -> int:
        expired = [k for k, e in self._entries.items() if e.expires_at <= now]
        for key in expired:
            del self._entries[key]
        return len(expired)

    async def evict(self, max_rows: int, *, batch_rows: int = BATCH_ROWS) -> int:
        # Ordered by last use: a hit or a put moves an entry to the end.
        excess = max(0, len(self._entries) - max_rows)
        for _ in range(excess):
            self._entries.popitem(last=False)
        return excess

    async def stats(self, now: datetime) -> Sequence[ModelCacheStats]:
        totals: dict[str, tuple[int, int]] = {}
        for e in self._entries.values():
            if e.expires_at > now:
                entries, hits = totals.get(e.model, (0, 0))
                totals[e.model] = (entries + 1, hits + e.hit_count)
        return [ModelCacheStats(m, *totals[m]) for m in sorted(totals)]

    async def purge(self, model: str | None = None, *, batch_rows: int = BATCH_ROWS) -> int:
        gone = [k for k, e in self._entries.items() if model is None or e.model == model]
        for key in gone:
            del self._entries[key]
        return len(gone)


class MemoryHotCache(HotCache):
    """A bounded LRU with per-entry TTL, in front of the durable cache."""

    def __init__(
        self, max_entries: int = 2_048, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._entries: OrderedDict[str, tuple[float, CachedCompletion]] = OrderedDict()
        self._max = max_entries
        self._monotonic = monotonic

    async def get(self, key: str) -> CachedCompletion | None:
        item = self._entries.get(key)
        if item is None:
            return None
        deadline, entry = item
        if deadline <= self._monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    async def put(self, entry: CachedCompletion, ttl_seconds: int) -> None:
        self._entries[entry.key] = (self._monotonic() + ttl_seconds, entry)
        self._entries.move_to_end(entry.key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def clear(self) -> None:
        self._entries.clear()
