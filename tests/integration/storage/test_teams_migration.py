"""Migration 0011 on data: keys from before it belong to no team, teams stored after it
come back at their longest legal values with the keys that name them, a team that keys
name cannot be deleted, and the downgrade drops the teams and keeps every key."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError

from contract.test_teams import longest_team
from integration.storage.schema_probe import column_names, row_count, table_names
from llmserver.adapters.sql import SqlDatabase, migrate
from llmserver.adapters.sql._records import columns
from llmserver.adapters.sql.models import ApiKeyModel, KeyModelLimitModel, TeamModel
from llmserver.domain.key_limits import ModelLimit
from llmserver.domain.keys import ApiKey, Role

LIMIT = ModelLimit("demo", rpm_limit=5)
OLD = ApiKey(
    id="k" * 64,
    name="é" * 200,
    prefix="abcdefghijkl",
    key_hash="h" * 64,
    role=Role.USER,
    created_at=datetime(2026, 12, 1, 12, tzinfo=UTC),
    quota_tokens=1_000,
    rpm_limit=60,
    budget_nanodollars=10**15,
    model_limits=(LIMIT,),
)
ROW = {n: v for n, v in columns(OLD).items() if n not in ("model_limits", "team_id")}
"""A key as 0010 holds it."""


async def test_0011_keeps_old_keys_teamless_and_its_downgrade_keeps_every_key(
    empty_database_url: str,
) -> None:
    db = SqlDatabase.from_url(empty_database_url)
    team = longest_team()
    member = replace(OLD, id="n" * 64, prefix="mnopqrstuvwx", team_id=team.id)
    try:
        await migrate.upgrade(empty_database_url, "0010")
        async with db.engine.begin() as conn:
            await conn.execute(insert(ApiKeyModel).values(ROW))
            # A key's model limits go with it (ON DELETE CASCADE): no step may drop its row.
            await conn.execute(
                insert(KeyModelLimitModel).values(key_id=OLD.id, model_id="demo", rpm_limit=5)
            )

        await migrate.upgrade(empty_database_url, "0011")
        await db.engine.dispose()
        assert await db.keys.get(OLD.id) == OLD
        await db.teams.add(team)
        await db.keys.add(member)
        assert await db.teams.get(team.id) == team
        assert await db.keys.find_by_prefix(member.prefix) == member
        # A team its keys name stays: they would lose its limits without a word.
        with pytest.raises(IntegrityError):
            async with db.engine.begin() as conn:
                await conn.execute(delete(TeamModel).where(TeamModel.id == team.id))
        with pytest.raises(ValueError, match="exists"):
            await db.keys.add(replace(member, id="m" * 64, prefix="zzzzzzzzzzzz", team_id="x"))

        await migrate.downgrade(empty_database_url, "0010")
        await db.engine.dispose()
        assert "teams" not in await table_names(db)
        assert "team_id" not in await column_names(db, "api_keys")
        assert await row_count(db, "api_keys") == 2
        assert await row_count(db, "key_model_limits") == 2

        await migrate.upgrade(empty_database_url)
        await db.engine.dispose()
        assert await db.keys.get(member.id) == replace(member, team_id=None)
        assert await db.keys.get(OLD.id) == OLD
    finally:
        await db.dispose()
