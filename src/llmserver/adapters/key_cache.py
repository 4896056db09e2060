"""A short-lived in-process cache in front of any ``KeyStore``.

Every API request authenticates, and on SQLite the key lookup is the largest single cost
before the first token (~1.5-2 ms measured). Keys change rarely, so lookups by prefix are
kept for ``ttl_s`` seconds. A revocation made through this process takes effect at once;
one made through another replica takes effect within ``ttl_s`` (``LLMSERVER_KEY_CACHE_TTL_S``,
0 turns the cache off). Expiry is checked on every request against the cached key, so it is
always exact.

Under load nobody waits for the store: a lookup past half the TTL returns the cached key and
starts one refresh in the background, and lookups that must wait (first sight of a key, or
an entry past its TTL) share one read instead of each sending their own.

Misses are kept the same way as hits, so that refusing a prefix no key has costs what
refusing a known prefix with a wrong secret costs (without it, the first waited for the
store every time: 330 µs against 5 µs in-process on SQLite) and timing does not tell which
prefixes exist. Only the first lookup of a prefix in ``ttl_s``, existing or not, reads the
store. A key created through this process is found at once; one created through another
replica within ``ttl_s`` (and only if its prefix, random, was looked up just before).
Misses have a table of their own, bounded (oldest dropped first), so a client spraying
random prefixes costs one indexed read per new prefix, as before, and can neither grow
memory nor push the keys in use out of the cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial

from llmserver.domain.keys import ApiKey
from llmserver.domain.ports import KeyStore
from llmserver.domain.single_flight import SingleFlight


@dataclass(slots=True)
class _Entry:
    key: ApiKey | None
    """``None``: no key has this prefix."""
    loaded_at: float


class CachedKeyStore(KeyStore):
    def __init__(
        self,
        inner: KeyStore,
        ttl_s: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ) -> None:
        self._inner = inner
        self._ttl = ttl_s
        self._now = monotonic
        self._max = max_entries
        self._by_prefix: dict[str, _Entry] = {}
        self._missing: dict[str, _Entry] = {}
        self._loads: SingleFlight[str, ApiKey | None] = SingleFlight()
        self._generation = 0
        """Bumped by every change made through this cache, so a read that started before
        it cannot put back an outdated copy."""

    async def add(self, key: ApiKey) -> None:
        await self._inner.add(key)
        self._generation += 1
        self._missing.pop(key.prefix, None)

    async def get(self, key_id: str) -> ApiKey | None:
        return await self._inner.get(key_id)

    async def find_by_prefix(self, prefix: str) -> ApiKey | None:
        entry = self._by_prefix.get(prefix)
        if entry is None:
            entry = self._missing.get(prefix)
        if entry is not None:
            age = self._now() - entry.loaded_at
            if age < self._ttl:
                if age >= self._ttl / 2:
                    # Refresh ahead; this lookup does not wait.
                    _ = self._loads.start(prefix, partial(self._fetch, prefix))
                return entry.key
        return await self._loads.join(prefix, partial(self._fetch, prefix))

    async def _fetch(self, prefix: str) -> ApiKey | None:
        started, generation = self._now(), self._generation
        key = await self._inner.find_by_prefix(prefix)
        if generation != self._generation:
            return key
        if self._ttl > 0:
            kept, other = self._by_prefix, self._missing
            if key is None:
                kept, other = other, kept
            other.pop(prefix, None)
            if prefix not in kept and len(kept) >= self._max:
                del kept[next(iter(kept))]  # the oldest
            kept[prefix] = _Entry(key, started)
        return key

    async def list(self) -> Sequence[ApiKey]:
        return await self._inner.list()

    async def revoke(self, key_id: str, at: datetime) -> ApiKey | None:
        key = await self._inner.revoke(key_id, at)
        self._generation += 1
        if key is not None:
            self._by_prefix.pop(key.prefix, None)
        return key

    async def update(self, key: ApiKey) -> ApiKey | None:
        stored = await self._inner.update(key)
        self._generation += 1
        if stored is not None:
            # Its new limits apply from the next request through this process.
            self._by_prefix.pop(stored.prefix, None)
        return stored

    async def touch(self, key_id: str, at: datetime) -> None:
        await self._inner.touch(key_id, at)
        self._generation += 1
        # Keep the cached copy's last use current, or every request would touch again.
        for entry in self._by_prefix.values():
            if entry.key is not None and entry.key.id == key_id:
                entry.key = replace(entry.key, last_used_at=at)
