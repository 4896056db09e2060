from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from llmserver.domain.ports import TeamStore
from llmserver.domain.teams import EDITABLE_TEAM_FIELDS, Team


class MemoryTeamStore(TeamStore):
    def __init__(self) -> None:
        self._by_id: dict[str, Team] = {}

    def _name_taken(self, team: Team) -> bool:
        return any(t.name == team.name and t.id != team.id for t in self._by_id.values())

    async def add(self, team: Team) -> None:
        if team.id in self._by_id or self._name_taken(team):
            raise ValueError(f"a team with id {team.id!r} or name {team.name!r} exists")
        self._by_id[team.id] = team

    async def get(self, team_id: str) -> Team | None:
        return self._by_id.get(team_id)

    async def find_by_name(self, name: str) -> Team | None:
        return next((t for t in self._by_id.values() if t.name == name), None)

    async def list(self) -> Sequence[Team]:
        return sorted(self._by_id.values(), key=lambda t: t.name)

    async def update(self, team: Team) -> Team | None:
        stored = self._by_id.get(team.id)
        if stored is None:
            return None
        if self._name_taken(team):
            raise ValueError(f"a team named {team.name!r} exists")
        changes = {name: getattr(team, name) for name in EDITABLE_TEAM_FIELDS}
        self._by_id[team.id] = stored = replace(stored, **changes)
        return stored
