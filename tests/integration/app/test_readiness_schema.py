"""``/readyz`` and the schema's revision, on a live server (SQLite and PostgreSQL).

An upgrade runs its migrations before the rollout, so the old pods meet a schema newer than
their code: they must stay ready (the upgrade rules make such migrations backward
compatible). A schema behind the code is not ready.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from alembic.util import CommandError
from sqlalchemy import text

from livesupport import running_server
from llmserver.adapters.sql import SqlDatabase, migrate

NEXT_RELEASE = "0999_next_release_contract"
"""A revision id the code does not know, as a later release's migration would leave."""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'llmserver.db'}"
    url: str = request.getfixturevalue("make_postgres_database")()
    return url


async def _stamp(url: str, revision: str) -> None:
    database = SqlDatabase.from_url(url)
    try:
        async with database.engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    finally:
        await database.dispose()


async def _revision(url: str) -> str | None:
    database = SqlDatabase.from_url(url)
    try:
        return (await database.migration_state()).current
    finally:
        await database.dispose()


def _database_check(base_url: str) -> tuple[int, dict[str, str]]:
    response = httpx.get(base_url + "/readyz", timeout=5)
    check: dict[str, str] = response.json()["checks"]["database"]
    return response.status_code, check


@pytest.mark.slow
def test_readyz_accepts_a_schema_at_or_past_head_and_refuses_one_behind(
    database_url: str, tmp_path: Path
) -> None:
    head = migrate.head_revision()
    with running_server(
        tmp_path, tmp_path / "no-demo-model", database_url=database_url, LLMSERVER_PROFILE="none"
    ) as server:
        assert _database_check(server.base_url) == (200, {"status": "ok"})

        asyncio.run(_stamp(database_url, NEXT_RELEASE))
        status, check = _database_check(server.base_url)
        assert status == 200
        assert check == {
            "status": "ok",
            "detail": f"schema at {NEXT_RELEASE}, newer than this code's head {head} "
            "(a later release's migration)",
        }
        # A rollback's migrations Job (this release's `migrate`, on the newer schema) has
        # nothing to do, where Alembic would fail on the unknown revision.
        said: list[str] = []
        assert asyncio.run(migrate.upgrade(database_url, progress=said.append)) is False
        assert asyncio.run(_revision(database_url)) == NEXT_RELEASE
        assert said == [
            f"schema at {NEXT_RELEASE}, newer than this code's head {head} "
            "(a later release's migration): nothing to upgrade"
        ]
        with pytest.raises(  # an explicit older target still goes through Alembic
            CommandError, match=f"Can't locate revision identified by '{NEXT_RELEASE}'"
        ):
            asyncio.run(migrate.upgrade(database_url, str(head)))

        asyncio.run(_stamp(database_url, str(head)))
        asyncio.run(migrate.downgrade(database_url, "-1"))
        previous = asyncio.run(_revision(database_url))
        assert previous is not None
        assert previous != head
        assert previous in migrate.known_revisions()
        status, check = _database_check(server.base_url)
        assert status == 503
        assert check == {
            "status": "fail",
            "detail": f"schema at {previous}, code expects {head}: run `llmserver migrate`",
        }
        body = httpx.get(server.base_url + "/readyz", timeout=5).json()
        assert body["status"] == "not_ready"

        asyncio.run(migrate.upgrade(database_url))
        assert _database_check(server.base_url) == (200, {"status": "ok"})
