from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

from llmserver.adapters.key_cache import CachedKeyStore
from llmserver.adapters.memory import MemoryKeyStore
from llmserver.domain.keys import ApiKey, Role

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def key(prefix: str = "abcdefghijkl") -> ApiKey:
    return ApiKey(
        id="k1", name="n", prefix=prefix, key_hash="h" * 64, role=Role.USER, created_at=NOW
    )


async def test_lookups_are_reused_within_the_ttl_and_refreshed_after() -> None:
    inner, ticks = MemoryKeyStore(), Ticks()
    cache = CachedKeyStore(inner, ttl_s=1.0, monotonic=ticks)
    await inner.add(key())
    assert (await cache.find_by_prefix("abcdefghijkl")) == key()
    await inner.revoke("k1", NOW)  # behind the cache's back, as another replica would
    ticks.now += 0.5
    cached = await cache.find_by_prefix("abcdefghijkl")
    assert cached is not None
    assert cached.revoked_at is None
    ticks.now += 0.6
    fresh = await cache.find_by_prefix("abcdefghijkl")
    assert fresh is not None
    assert fresh.revoked_at == NOW


async def test_revocation_through_the_cache_is_immediate() -> None:
    inner = MemoryKeyStore()
    cache = CachedKeyStore(inner, ttl_s=60.0)
    await cache.add(key())
    await cache.find_by_prefix("abcdefghijkl")
    await cache.revoke("k1", NOW)
    revoked = await cache.find_by_prefix("abcdefghijkl")
    assert revoked is not None
    assert revoked.revoked_at == NOW


async def test_touch_updates_the_cached_copy() -> None:
    inner = MemoryKeyStore()
    cache = CachedKeyStore(inner, ttl_s=60.0)
    await cache.add(key())
    await cache.find_by_prefix("abcdefghijkl")
    await cache.touch("k1", NOW)
    cached = await cache.find_by_prefix("abcdefghijkl")
    assert cached == replace(key(), last_used_at=NOW)


async def test_zero_ttl_always_reads_the_store_and_unknown_prefixes_are_not_kept() -> None:
    inner = MemoryKeyStore()
    cache = CachedKeyStore(inner, ttl_s=0.0)
    assert await cache.find_by_prefix("abcdefghijkl") is None
    await inner.add(key())
    assert await cache.find_by_prefix("abcdefghijkl") == key()
    await inner.revoke("k1", NOW)
    revoked = await cache.find_by_prefix("abcdefghijkl")
    assert revoked is not None
    assert revoked.revoked_at == NOW


class CountingStore(MemoryKeyStore):
    """The memory store, counting the lookups that reach it."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    async def find_by_prefix(self, prefix: str) -> ApiKey | None:
        self.lookups += 1
        found = await super().find_by_prefix(prefix)
        await asyncio.sleep(0.01)  # the answer arrives a database round trip later
        return found


async def test_concurrent_lookups_of_an_unknown_entry_share_one_read() -> None:
    inner = CountingStore()
    await inner.add(key())
    cache = CachedKeyStore(inner, ttl_s=1.0)

    found = await asyncio.gather(*(cache.find_by_prefix("abcdefghijkl") for _ in range(32)))

    assert found == [key()] * 32
    assert inner.lookups == 1


async def test_past_half_the_ttl_the_cached_key_answers_and_one_refresh_runs_behind() -> None:
    inner, ticks = CountingStore(), Ticks()
    await inner.add(key())
    cache = CachedKeyStore(inner, ttl_s=1.0, monotonic=ticks)
    await cache.find_by_prefix("abcdefghijkl")
    await inner.revoke("k1", NOW)
    ticks.now += 0.6

    answers = [await cache.find_by_prefix("abcdefghijkl") for _ in range(5)]

    assert all(a is not None and a.revoked_at is None for a in answers)  # nobody waited
    await asyncio.sleep(0.05)
    assert inner.lookups == 2  # one refresh for the five lookups
    refreshed = await cache.find_by_prefix("abcdefghijkl")
    assert refreshed is not None
    assert refreshed.revoked_at == NOW


async def test_a_miss_is_kept_within_the_ttl_and_read_again_after() -> None:
    inner, ticks = CountingStore(), Ticks()
    cache = CachedKeyStore(inner, ttl_s=1.0, monotonic=ticks)
    assert await cache.find_by_prefix("abcdefghijkl") is None
    await inner.add(key())  # behind the cache's back, as another replica would
    ticks.now += 0.4
    assert await cache.find_by_prefix("abcdefghijkl") is None
    assert inner.lookups == 1
    ticks.now += 0.7
    assert await cache.find_by_prefix("abcdefghijkl") == key()


async def test_a_key_added_through_the_cache_is_found_at_once_after_a_kept_miss() -> None:
    cache = CachedKeyStore(MemoryKeyStore(), ttl_s=60.0)
    assert await cache.find_by_prefix("abcdefghijkl") is None
    await cache.add(key())
    assert await cache.find_by_prefix("abcdefghijkl") == key()


async def test_a_miss_read_while_the_key_is_added_is_not_kept() -> None:
    inner = CountingStore()
    cache = CachedKeyStore(inner, ttl_s=60.0)
    lookup = asyncio.create_task(cache.find_by_prefix("abcdefghijkl"))
    while inner.lookups == 0:  # until the read has run and seen no key
        await asyncio.sleep(0)
    await cache.add(key())
    assert await lookup is None
    assert await cache.find_by_prefix("abcdefghijkl") == key()


async def test_sprayed_unknown_prefixes_are_bounded_and_do_not_evict_keys_in_use() -> None:
    inner = CountingStore()
    await inner.add(key())
    cache = CachedKeyStore(inner, ttl_s=60.0, max_entries=4)
    await cache.find_by_prefix("abcdefghijkl")
    for n in range(100):
        assert await cache.find_by_prefix(f"unknown{n:05d}") is None
    lookups = inner.lookups
    assert await cache.find_by_prefix("abcdefghijkl") == key()
    assert await cache.find_by_prefix("unknown00099") is None
    assert inner.lookups == lookups  # both answered from memory
    assert await cache.find_by_prefix("unknown00095") is None
    assert inner.lookups == lookups + 1  # only the last four misses were kept
