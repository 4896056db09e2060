from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Table, insert, inspect, select

from llmserver.adapters.sql import SqlDatabase, migrate
from llmserver.adapters.sql.models import RequestLogModel, RoleModel, metadata
from llmserver.adapters.sql.partitions import is_partition
from llmserver.domain.keys import DEFAULT_ROLES

TABLES = {
    "roles",
    "api_keys",
    "key_model_limits",
    "key_model_usage",
    "usage",
    "request_logs",
    "completion_cache",
    "usage_daily",
    "budget_spend",
    "teams",
    "audit_log",
}


def _tables(conn: Connection) -> set[str]:
    """The tables the models describe (request_logs' partitions on PostgreSQL left out)."""
    return {n for n in inspect(conn).get_table_names() if not is_partition(n)} - {"alembic_version"}


def _include(name: str | None, type_: str, _parents: object) -> bool:
    return not (type_ == "table" and name is not None and is_partition(name))


def _differences(conn: Connection) -> list[object]:
    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "include_name": _include}
    )
    return list(compare_metadata(context, metadata))


async def test_upgrade_downgrade_upgrade_without_drift(
    empty_database_url: str, tmp_path: Path
) -> None:
    head = migrate.head_revision()
    steps: list[str] = []
    db = SqlDatabase.from_url(empty_database_url)
    try:
        assert await db.migration_state() == (None, head, True)

        await migrate.upgrade(empty_database_url, progress=steps.append)
        assert await db.migration_state() == (head, head, False)
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_tables) == TABLES
            roles = (await conn.execute(select(RoleModel.__table__))).all()
            # The migrated schema is exactly what the models describe.
            assert await conn.run_sync(_differences) == []
        # The roles the migrations seed are the ones the code describes.
        assert {(r.name, r.description, r.default_rpm, r.default_quota_tokens) for r in roles} == {
            (s.name.value, s.description, s.default_rpm, s.default_quota_tokens)
            for s in DEFAULT_ROLES
        }
        script = await migrate.revision(
            empty_database_url, "nothing changed", version_path=tmp_path / "versions"
        )
        generated = script.read_text()
        assert f"down_revision: str | None = '{head}'" in generated
        assert "op." not in generated

        await migrate.downgrade(empty_database_url, "base", progress=steps.append)
        assert await db.migration_state() == (None, head, True)
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_tables) == set()

        await migrate.upgrade(empty_database_url)
        assert await db.migration_state() == (head, head, False)
    finally:
        await db.dispose()
    docs = {
        "0001": "initial schema: roles, api_keys, usage, request_logs, completion_cache",
        "0002": "request_logs.request_id holds the 128 characters an X-Request-ID may have",
        "0003": "data lifecycle: request_logs by month (PostgreSQL), usage_daily, "
        "completion_cache.last_hit_at",
        "0004": "audit_log: every admin action, who made it, and what it changed",
        "0005": "request_logs.cost_picodollars and usage_daily.cost_picodollars: "
        "what requests cost",
        "0006": "api_keys.tpm_limit and api_keys.max_parallel: tokens per minute, "
        "requests in flight",
        "0007": "api_keys.budget_nanodollars and budget_window, and budget_spend: "
        "spend budgets per key",
        "0008": "key_model_limits: a key's own RPM and TPM limits on one model",
        "0009": "request_logs.deployment and attempts: which routed deployment answered, "
        "in how many calls",
        "0010": "key_model_limits.quota_tokens and key_model_usage: a key's monthly token "
        "quota per model",
        "0011": "teams, api_keys.team_id, and the team of request_logs and usage_daily rows",
    }
    assert head == "0011"
    assert steps == [
        *(f"upgraded to {rev}: {doc}" for rev, doc in docs.items()),
        *(f"downgraded from {rev}: {doc}" for rev, doc in reversed(docs.items())),
    ]


def _log_row(request_id: str) -> dict[str, object]:
    return {
        "request_id": request_id,
        "route": "/v1/completions",
        "status": 200,
        "latency_ms": 1.0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "stream": False,
        "created_at": datetime(2026, 12, 1, tzinfo=UTC),
    }


async def test_0002_widens_request_ids_to_128_and_its_downgrade_keeps_every_row(
    empty_database_url: str,
) -> None:
    logs: Table = RequestLogModel.__table__  # type: ignore[assignment]  # declared FromClause
    db = SqlDatabase.from_url(empty_database_url)
    try:
        await migrate.upgrade(empty_database_url, "0001")
        async with db.engine.begin() as conn:
            await conn.execute(insert(logs), [_log_row("a" * 64)])

        await migrate.upgrade(empty_database_url, "0002")
        async with db.engine.begin() as conn:
            # On PostgreSQL this failed before 0002: value too long for varchar(64).
            await conn.execute(insert(logs), [_log_row("b" * 128)])
            stored = (await conn.execute(select(logs.c.request_id).order_by(logs.c.id))).all()
        assert [r.request_id for r in stored] == ["a" * 64, "b" * 128]

        await migrate.downgrade(empty_database_url, "0001")
        await db.engine.dispose()  # asyncpg's cached plans saw the old column type
        async with db.engine.connect() as conn:
            stored = (await conn.execute(select(logs.c.request_id).order_by(logs.c.id))).all()
        assert [r.request_id for r in stored] == ["a" * 64, "b" * 64]

        await migrate.upgrade(empty_database_url)
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
    finally:
        await db.dispose()
