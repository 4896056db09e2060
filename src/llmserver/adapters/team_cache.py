"""A short-lived in-process cache of teams by id, in front of any ``TeamStore``.

A request of a key in a team needs the team's limits; reading them from the database on
every request would add a round trip to each. Teams are kept for ``ttl_s`` seconds, as
keys are (``adapters.key_cache``, the same ``LLMSERVER_KEY_CACHE_TTL_S``): a change made
through this process applies from the next request, one made through another replica
within ``ttl_s``. A lookup past half the TTL returns the cached team and refreshes it in
the background; lookups that must wait share one read. Only teams that keys name are
looked up, so the table stays as small as the number of teams in use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from llmserver.domain.ports import TeamStore
from llmserver.domain.single_flight import SingleFlight
from llmserver.domain.teams import Team


@dataclass(slots=True)
class _Entry:
    team: Team | None
    loaded_at: float


class CachedTeamStore(TeamStore):
    def __init__(
        self, inner: TeamStore, ttl_s: float, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._inner = inner
        self._ttl = ttl_s
        self._now = monotonic
        self._by_id: dict[str, _Entry] = {}
        self._loads: SingleFlight[str, Team | None] = SingleFlight()
        self._generation = 0
        """Bumped by every change made through this cache, so a read that started before
        it cannot put back an outdated copy."""

    async def add(self, team: Team) -> None:
        await self._inner.add(team)
        self._changed(team.id)

    async def get(self, team_id: str) -> Team | None:
        entry = self._by_id.get(team_id)
        if entry is not None:
            age = self._now() - entry.loaded_at
            if age < self._ttl:
                if age >= self._ttl / 2:
                    _ = self._loads.start(team_id, partial(self._fetch, team_id))
                return entry.team
        return await self._loads.join(team_id, partial(self._fetch, team_id))

    async def _fetch(self, team_id: str) -> Team | None:
        started, generation = self._now(), self._generation
        team = await self._inner.get(team_id)
        if generation == self._generation and self._ttl > 0:
            self._by_id[team_id] = _Entry(team, started)
        return team

    async def find_by_name(self, name: str) -> Team | None:
        return await self._inner.find_by_name(name)

    async def list(self) -> Sequence[Team]:
        return await self._inner.list()

    async def update(self, team: Team) -> Team | None:
        try:
            return await self._inner.update(team)
        finally:
            self._changed(team.id)

    def _changed(self, team_id: str) -> None:
        self._generation += 1
        self._by_id.pop(team_id, None)
