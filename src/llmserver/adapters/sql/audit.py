from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from llmserver.adapters.sql._records import columns, record
from llmserver.adapters.sql.models import AuditLogModel
from llmserver.domain.audit import AuditEntry, AuditEvent, AuditQuery
from llmserver.domain.ports import AuditLog

_T: Table = AuditLogModel.__table__  # type: ignore[assignment]


class SqlAuditLog(AuditLog):
    """The audit trail in its table, written at once (not behind): an admin action is
    rare, and its entry must not be lost to a crash after the answer."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(self, event: AuditEvent) -> AuditEntry:
        async with self._engine.begin() as conn:
            row = (await conn.execute(insert(_T).values(columns(event)).returning(*_T.c))).one()
        return record(row, AuditEntry)

    async def query(self, query: AuditQuery) -> tuple[Sequence[AuditEntry], int]:
        conditions: list[Any] = []
        if query.action is not None:
            conditions.append(_T.c.action == query.action.value)
        if query.actor_key_id is not None:
            conditions.append(_T.c.actor_key_id == query.actor_key_id)
        if query.target is not None:
            conditions.append(_T.c.target == query.target)
        if query.since is not None:
            conditions.append(_T.c.at >= query.since)
        if query.until is not None:
            conditions.append(_T.c.at < query.until)
        page = (
            select(_T)
            .where(*conditions)
            .order_by(_T.c.id.desc())
            .limit(query.limit)
            .offset(query.offset)
        )
        count = select(func.count()).select_from(_T).where(*conditions)
        async with self._engine.connect() as conn:
            rows = [record(row, AuditEntry) for row in await conn.execute(page)]
            total = (await conn.execute(count)).scalar_one()
        return rows, total
