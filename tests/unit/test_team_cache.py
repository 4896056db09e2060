"""The team cache: a team is read once per TTL, refreshed ahead past half of it, a change
through the cache applies at once, and concurrent first reads share one."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

from llmserver.adapters.memory import MemoryTeamStore
from llmserver.adapters.team_cache import CachedTeamStore
from llmserver.domain.teams import Team

NOW = datetime(2026, 12, 2, tzinfo=UTC)
TEAM = Team(id="t" * 32, name="research", created_at=NOW, rpm_limit=5)


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingStore(MemoryTeamStore):
    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    async def get(self, team_id: str) -> Team | None:
        self.gets += 1
        await asyncio.sleep(0)
        return await super().get(team_id)


async def test_a_team_is_read_once_per_ttl_and_a_change_elsewhere_shows_after_it() -> None:
    inner, ticks = CountingStore(), Ticks()
    cache = CachedTeamStore(inner, ttl_s=1.0, monotonic=ticks)
    await inner.add(TEAM)
    first = await asyncio.gather(*(cache.get(TEAM.id) for _ in range(5)))
    assert first == [TEAM] * 5
    assert inner.gets == 1  # the concurrent first reads shared one
    await inner.update(replace(TEAM, rpm_limit=9))  # as another replica would
    ticks.now += 0.4
    assert await cache.get(TEAM.id) == TEAM
    assert inner.gets == 1
    ticks.now += 0.2  # past half the TTL: answered from the cache, refreshed behind
    assert await cache.get(TEAM.id) == TEAM
    await asyncio.sleep(0.01)
    assert await cache.get(TEAM.id) == replace(TEAM, rpm_limit=9)
    assert inner.gets == 2


async def test_a_change_through_the_cache_applies_from_the_next_read() -> None:
    inner = MemoryTeamStore()
    cache = CachedTeamStore(inner, ttl_s=60.0)
    await cache.add(TEAM)
    assert await cache.get(TEAM.id) == TEAM
    await cache.update(replace(TEAM, rpm_limit=1))
    stored = await cache.get(TEAM.id)
    assert stored is not None
    assert stored.rpm_limit == 1
    assert await cache.get("u" * 32) is None
