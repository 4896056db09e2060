from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import Protocol

from llmserver.adapters.dead_letter import dead_letter, write_isolating
from llmserver.domain.ports import (
    BATCH_ROWS,
    CachedCompletion,
    CompletionCache,
    HotCache,
    ModelCacheStats,
    RowsRejected,
)
from llmserver.domain.single_flight import SingleFlight


class DurableCache(Protocol):
    async def peek(self, key: str, now: datetime) -> CachedCompletion | None: ...

    async def put_many(self, entries: Sequence[CachedCompletion]) -> None: ...

    async def add_hits(self, hits: Mapping[str, int], at: datetime) -> None: ...

    async def live_keys(self, now: datetime) -> list[str]: ...

    async def purge_expired(self, now: datetime, *, batch_rows: int = BATCH_ROWS) -> int: ...

    async def evict(self, max_rows: int, *, batch_rows: int = BATCH_ROWS) -> int: ...

    async def stats(self, now: datetime) -> Sequence[ModelCacheStats]: ...

    async def purge(self, model: str | None = None, *, batch_rows: int = BATCH_ROWS) -> int: ...


MAX_PENDING = 20_000
"""Entries waiting for the database at most. Past it (the database has been down a while)
the oldest waiting entries are dropped: a cache may forget, memory must not grow forever."""


def _short(key: str) -> int:
    # The key's 64-bit hash: a collision costs one extra read, never a wrong answer, and
    # an int in a set takes a third of the memory of a 64-character key.
    return hash(key)


class WriteBehindCompletionCache(CompletionCache):
    """The durable response cache with its writes (entries and hit counts) batched behind.

    With ``index`` on, the process also keeps a 64-bit hash of the key of every live entry, loaded
    by ``load_index`` at start-up and grown by every ``put``. A key the index lacks is a
    miss without a database read, which is every unique request. That is only sound when
    no other process writes the cache, so it is for single-process deployments.
    """

    def __init__(
        self, durable: DurableCache, *, index: bool, max_pending: int = MAX_PENDING
    ) -> None:
        self._durable = durable
        self._max_pending = max_pending
        self._index: set[int] | None = set() if index else None
        self._entries: dict[str, CachedCompletion] = {}
        self._writing: dict[str, CachedCompletion] = {}
        """Entries of the flush in progress: still answered from here until committed."""
        self._hits: dict[str, int] = {}
        self._last_hit: datetime | None = None
        """When the latest queued hit came: written as every queued entry's last hit, so
        the hot path keeps one assignment, not a time per key (the size cap's order is
        then exact to within a flush interval)."""
        self._reads: SingleFlight[str, CachedCompletion | None] = SingleFlight()
        """Identical requests arriving together (a popular prompt that fell out of the hot
        cache) share one read instead of queueing up on SQLite's single connection."""

    async def load_index(self, now: datetime) -> int:
        if self._index is None:
            return 0
        self._index.update(_short(key) for key in await self._durable.live_keys(now))
        return len(self._index)

    async def get(self, key: str, now: datetime) -> CachedCompletion | None:
        entry = self._entries.get(key) or self._writing.get(key)
        if entry is None:
            if self._index is not None and _short(key) not in self._index:
                return None
            entry = await self._reads.join(key, partial(self._durable.peek, key, now))
            if entry is None:
                if self._index is not None:
                    self._index.discard(_short(key))  # expired or purged
                return None
        elif entry.expires_at <= now:
            return None
        hits = self._hits[key] = self._hits.get(key, 0) + 1
        self._last_hit = now
        return replace(entry, hit_count=entry.hit_count + hits)

    def record_hot_hit(self, key: str, now: datetime) -> None:
        """A hit the hot cache answered: the entry's last hit moves (its count does not), so
        that the size cap does not evict what the hot layer keeps serving."""
        self._hits.setdefault(key, 0)
        self._last_hit = now

    async def put(self, entry: CachedCompletion) -> None:
        # A replaced entry starts counting again, as in the database.
        self._entries[entry.key] = entry
        self._hits.pop(entry.key, None)
        while len(self._entries) > self._max_pending:
            del self._entries[next(iter(self._entries))]
        if self._index is not None:
            self._index.add(_short(entry.key))

    async def purge_expired(self, now: datetime, *, batch_rows: int = BATCH_ROWS) -> int:
        await self.flush()
        return await self._durable.purge_expired(now, batch_rows=batch_rows)

    async def evict(self, max_rows: int, *, batch_rows: int = BATCH_ROWS) -> int:
        await self.flush()  # the entries and hits queued here count
        return await self._durable.evict(max_rows, batch_rows=batch_rows)

    async def stats(self, now: datetime) -> Sequence[ModelCacheStats]:
        await self.flush()  # the entries and hits queued here count
        return await self._durable.stats(now)

    async def purge(self, model: str | None = None, *, batch_rows: int = BATCH_ROWS) -> int:
        # Queued entries are written first and purged with the rest, so the count is
        # every entry that went. The index may keep their hashes: a purged key then costs
        # one read, which finds nothing and drops it from the index (see ``get``).
        await self.flush()
        return await self._durable.purge(model, batch_rows=batch_rows)

    async def flush(self) -> None:
        """Write queued entries, then queued hit counts; whatever fails stays queued, but
        what the database rejects is set aside (``dead_letter``): a cache may forget."""
        if self._entries:
            entries = self._writing = self._entries
            self._entries = {}

            def settled(done: Sequence[CachedCompletion], error: RowsRejected | None) -> None:
                for entry in done:
                    del entries[entry.key]
                if error is not None:
                    dead_letter("completion_cache", [e.key for e in done], error)

            try:
                await write_isolating(self._durable.put_many, list(entries.values()), settled)
            except BaseException:
                merged = entries | self._entries
                self._entries = dict(list(merged.items())[-self._max_pending :])
                raise
            finally:
                self._writing = {}
        if self._hits and self._last_hit is not None:
            hits, self._hits = self._hits, {}
            at = self._last_hit

            def counted(done: Sequence[tuple[str, int]], error: RowsRejected | None) -> None:
                for key, _ in done:
                    del hits[key]
                if error is not None:
                    dead_letter("completion_cache.hits", [key for key, _ in done], error)

            async def add_hits(part: Sequence[tuple[str, int]]) -> None:
                await self._durable.add_hits(dict(part), at)

            try:
                await write_isolating(add_hits, list(hits.items()), counted)
            except BaseException:
                for key, n in hits.items():
                    self._hits[key] = self._hits.get(key, 0) + n
                raise


class HitRecordingHotCache(HotCache):
    """A hot cache that reports its hits to the durable cache behind it.

    The gateway asks the durable layer only when the hot one misses, so without this an
    entry the hot layer serves all day would look unused to the size cap. Picked only with
    ``LLMSERVER_CACHE_MAX_ROWS`` set: it adds a clock read and a dict write per hot hit."""

    def __init__(
        self,
        hot: HotCache,
        durable: WriteBehindCompletionCache,
        now: Callable[[], datetime],
    ) -> None:
        self._hot = hot
        self._durable = durable
        self._now = now

    async def get(self, key: str) -> CachedCompletion | None:
        entry = await self._hot.get(key)
        if entry is not None:
            self._durable.record_hot_hit(key, self._now())
        return entry

    async def put(self, entry: CachedCompletion, ttl_seconds: int) -> None:
        await self._hot.put(entry, ttl_seconds)

    async def clear(self) -> None:
        await self._hot.clear()
