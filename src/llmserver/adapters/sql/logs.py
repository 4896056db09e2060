from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from llmserver.adapters.sql._records import columns, record
from llmserver.adapters.sql._writer import TransactionWriter
from llmserver.adapters.sql._writes import REQUEST_LOGS
from llmserver.adapters.sql.models import RequestLogModel
from llmserver.domain.logs import LogQuery, RequestLog
from llmserver.domain.ports import RequestLogReader, RequestLogSink

_T: Table = RequestLogModel.__table__  # type: ignore[assignment]


class SqlRequestLogStore(RequestLogSink, RequestLogReader):
    """Request-log sink (batched multi-row INSERT) and reader."""

    def __init__(self, engine: AsyncEngine, writer: TransactionWriter) -> None:
        self._engine = engine
        self._writer = writer

    async def write(self, rows: Sequence[RequestLog]) -> None:
        if not rows:
            return
        values = [columns(row) for row in rows]
        await self._writer.run([(REQUEST_LOGS, values)])

    async def query(self, query: LogQuery) -> tuple[Sequence[RequestLog], int]:
        conditions: list[Any] = []
        if query.key_id is not None:
            conditions.append(_T.c.key_id == query.key_id)
        if query.model is not None:
            conditions.append(_T.c.model == query.model)
        if query.status is not None:
            conditions.append(_T.c.status == query.status)
        if query.since is not None:
            conditions.append(_T.c.created_at >= query.since)
        if query.until is not None:
            conditions.append(_T.c.created_at < query.until)
        page = (
            select(*(c for c in _T.c if c.name != "id"))
            .where(*conditions)
            .order_by(_T.c.created_at.desc(), _T.c.id.desc())
            .limit(query.limit)
            .offset(query.offset)
        )
        count = select(func.count()).select_from(_T).where(*conditions)
        async with self._engine.connect() as conn:
            rows = [record(row, RequestLog) for row in await conn.execute(page)]
            total = (await conn.execute(count)).scalar_one()
        return rows, total
