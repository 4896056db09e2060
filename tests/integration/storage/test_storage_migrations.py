from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, select

from llmserver.adapters.sql import SqlDatabase, migrate
from llmserver.adapters.sql.models import RoleModel, metadata
from llmserver.domain.keys import DEFAULT_ROLES

TABLES = {"roles", "api_keys", "usage", "request_logs", "completion_cache"}


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names()) - {"alembic_version"}


def _differences(conn: Connection) -> list[object]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_upgrade_downgrade_upgrade_without_drift(
    empty_database_url: str, tmp_path: Path
) -> None:
    head = migrate.head_revision()
    steps: list[str] = []
    db = SqlDatabase.from_url(empty_database_url)
    try:
        assert await db.migration_state() == (None, head)

        await migrate.upgrade(empty_database_url, progress=steps.append)
        assert await db.migration_state() == (head, head)
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_tables) == TABLES
            roles = (await conn.execute(select(RoleModel.__table__))).all()
            # The migrated schema is exactly what the models describe.
            assert await conn.run_sync(_differences) == []
        assert {(r.name, r.default_rpm, r.default_quota_tokens) for r in roles} == {
            (s.name.value, s.default_rpm, s.default_quota_tokens) for s in DEFAULT_ROLES
        }
        script = await migrate.revision(
            empty_database_url, "nothing changed", version_path=tmp_path / "versions"
        )
        generated = script.read_text()
        assert f"down_revision: str | None = '{head}'" in generated
        assert "op." not in generated

        await migrate.downgrade(empty_database_url, "base", progress=steps.append)
        assert await db.migration_state() == (None, head)
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_tables) == set()

        await migrate.upgrade(empty_database_url)
        assert await db.migration_state() == (head, head)
    finally:
        await db.dispose()
    doc = "initial schema: roles, api_keys, usage, request_logs, completion_cache"
    assert steps == [f"upgraded to {head}: {doc}", f"downgraded from {head}: {doc}"]
