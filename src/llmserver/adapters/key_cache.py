"""A short-lived in-process cache in front of any ``KeyStore``.

Every API request authenticates, and on SQLite the key lookup is the largest single cost
before the first token (~1.5-2 ms measured). Keys change rarely, so lookups by prefix are
kept for ``ttl_s`` seconds. A revocation made through this process takes effect at once;
one made through another replica takes effect within ``ttl_s`` (``LLMSERVER_KEY_CACHE_TTL_S``,
0 turns the cache off). Expiry is checked on every request against the cached key, so it is
always exact.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from llmserver.domain.keys import ApiKey
from llmserver.domain.ports import KeyStore


class CachedKeyStore:
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
        self._by_prefix: dict[str, tuple[float, ApiKey]] = {}

    async def add(self, key: ApiKey) -> None:
        await self._inner.add(key)

    async def get(self, key_id: str) -> ApiKey | None:
        return await self._inner.get(key_id)

    async def find_by_prefix(self, prefix: str) -> ApiKey | None:
        cached = self._by_prefix.get(prefix)
        if cached is not None and cached[0] > self._now():
            return cached[1]
        key = await self._inner.find_by_prefix(prefix)
        if key is None:
            self._by_prefix.pop(prefix, None)
        elif self._ttl > 0:
            if len(self._by_prefix) >= self._max:
                self._by_prefix.clear()
            self._by_prefix[prefix] = (self._now() + self._ttl, key)
        return key

    async def list(self) -> Sequence[ApiKey]:
        return await self._inner.list()

    async def revoke(self, key_id: str, at: datetime) -> ApiKey | None:
        key = await self._inner.revoke(key_id, at)
        if key is not None:
            self._by_prefix.pop(key.prefix, None)
        return key

    async def touch(self, key_id: str, at: datetime) -> None:
        await self._inner.touch(key_id, at)
        # Keep the cached copy's last use current, or every request would touch again.
        for prefix, (deadline, key) in list(self._by_prefix.items()):
            if key.id == key_id:
                self._by_prefix[prefix] = (deadline, replace(key, last_used_at=at))
