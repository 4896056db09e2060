from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from llmserver.adapters.sql._records import columns, record
from llmserver.adapters.sql.models import TeamModel
from llmserver.domain.ports import TeamStore
from llmserver.domain.teams import EDITABLE_TEAM_FIELDS, Team

_T: Table = TeamModel.__table__  # type: ignore[assignment]


class SqlTeamStore(TeamStore):
    """Core queries, as ``SqlKeyStore``'s lookups: the gateway's team cache reads here."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, team: Team) -> None:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(insert(_T).values(columns(team)))
        except IntegrityError as exc:  # only the id and the name are unique
            raise ValueError(f"a team with id {team.id!r} or name {team.name!r} exists") from exc

    async def get(self, team_id: str) -> Team | None:
        return await self._one(_T.c.id == team_id)

    async def find_by_name(self, name: str) -> Team | None:
        return await self._one(_T.c.name == name)

    async def _one(self, where: Any) -> Team | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(_T).where(where))).one_or_none()
        return None if row is None else record(row, Team)

    async def list(self) -> Sequence[Team]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(_T))
        # Sorted here, by code point as the memory store sorts: a collation may differ.
        return sorted((record(row, Team) for row in rows), key=lambda t: t.name)

    async def update(self, team: Team) -> Team | None:
        values = columns(team)
        try:
            async with self._engine.begin() as conn:
                updated = await conn.execute(
                    update(_T)
                    .where(_T.c.id == team.id)
                    .values({name: values[name] for name in EDITABLE_TEAM_FIELDS})
                )
        except IntegrityError as exc:
            raise ValueError(f"a team named {team.name!r} exists") from exc
        if not updated.rowcount:
            return None
        return await self.get(team.id)
