from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from llmserver.adapters.sql._records import columns, record
from llmserver.adapters.sql._writer import TransactionWriter
from llmserver.adapters.sql._writes import REQUEST_LOGS
from llmserver.adapters.sql.models import RequestLogModel
from llmserver.domain.logs import LogQuery, RequestLog
from llmserver.domain.ports import BATCH_ROWS, RequestLogReader, RequestLogSink

_T: Table = RequestLogModel.__table__  # type: ignore[assignment]
_FIELDS = [c for c in _T.c if c.name != "id"]


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
        if query.request_id is not None:
            conditions.append(_T.c.request_id == query.request_id)
        if query.cache_status is not None:
            conditions.append(_T.c.cache_status == query.cache_status.value)
        page = (
            select(*_FIELDS)
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

    async def export(
        self, since: datetime, until: datetime | None = None, *, batch_rows: int = BATCH_ROWS
    ) -> AsyncIterator[RequestLog]:
        # Keyset pages on (created_at, id), each its own short read: no snapshot or cursor
        # is held between pages, and a page costs the same however deep the export is.
        page = select(*_FIELDS, _T.c.id).order_by(_T.c.created_at, _T.c.id).limit(batch_rows)
        page = page.where(_T.c.created_at >= since)
        if until is not None:
            page = page.where(_T.c.created_at < until)
        after: tuple[datetime, int] | None = None
        while True:
            stmt = page if after is None else page.where(tuple_(_T.c.created_at, _T.c.id) > after)
            async with self._engine.connect() as conn:
                rows = (await conn.execute(stmt)).all()
            for row in rows:
                yield record(row, RequestLog)
            if len(rows) < batch_rows:
                return
            after = (rows[-1].created_at, rows[-1].id)
