"""Migration 0004 on data: audit_log appears beside the rows already there, takes entries of
the longest legal values, and its downgrade removes it and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, text

from integration.storage.schema_probe import table_names
from llmserver.adapters.sql import SqlDatabase, migrate
from llmserver.adapters.sql.models import AuditLogModel
from llmserver.domain.audit import AUDIT_TARGET_MAX_CHARS, AuditAction, AuditEvent, AuditQuery
from llmserver.domain.logs import REQUEST_ID_MAX_CHARS


async def _key_names(db: SqlDatabase) -> list[str]:
    async with db.engine.connect() as conn:
        return list((await conn.execute(text("SELECT name FROM api_keys ORDER BY id"))).scalars())


async def test_0004_adds_audit_log_and_its_downgrade_keeps_every_other_row(
    empty_database_url: str,
) -> None:
    db = SqlDatabase.from_url(empty_database_url)
    try:
        await migrate.upgrade(empty_database_url, "0003")
        async with db.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO api_keys (id, name, prefix, key_hash, role, allowed_models, "
                    "created_at) VALUES ('k1', 'kept', 'p1', 'h', 'user', '[]', :at)"
                ),
                {"at": datetime(2026, 1, 1, tzinfo=UTC)},
            )
        assert "audit_log" not in await table_names(db)

        await migrate.upgrade(empty_database_url, "0004")
        await db.engine.dispose()
        assert await _key_names(db) == ["kept"]
        event = AuditEvent(
            at=datetime(2026, 12, 1, tzinfo=UTC),
            action=AuditAction.KEY_UPDATE,
            actor_key_id="a" * 64,
            actor_prefix="p" * 32,
            target="é" * AUDIT_TARGET_MAX_CHARS,
            before={"rpm_limit": 60},
            after={"rpm_limit": 2},
            request_id="r" * REQUEST_ID_MAX_CHARS,
        )
        stored = await db.audit.record(event)
        entries, total = await db.audit.query(AuditQuery())
        assert total == 1
        assert entries == [stored]
        assert stored.target == event.target
        assert stored.after == {"rpm_limit": 2}

        await migrate.downgrade(empty_database_url, "0003")
        await db.engine.dispose()
        assert "audit_log" not in await table_names(db)
        assert await _key_names(db) == ["kept"]

        await migrate.upgrade(empty_database_url)
        async with db.engine.connect() as conn:
            rows = (await conn.execute(select(AuditLogModel.__table__))).all()
        assert rows == []  # a fresh trail: the downgrade dropped the table with its rows
    finally:
        await db.dispose()
