"""Request-log retention: on PostgreSQL by monthly partitions (``partitions``), on SQLite
(and for PostgreSQL's default partition) by deletes in bounded batches.

Each batch is a short transaction of its own, paced (``_paced``): its rows' usage is rolled up
(``rollup.roll_up``) and the rows deleted, chosen by id first so that both statements see
exactly the same rows whatever the log writer commits meanwhile. On PostgreSQL the batches
also take the storage's advisory lock, so that two replicas never roll up a row twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Table, delete, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import TableClause

from llmserver.adapters.sql import partitions, rollup
from llmserver.adapters.sql._paced import paced_batches
from llmserver.adapters.sql.models import RequestLogModel
from llmserver.domain.logs import DailyUsage
from llmserver.domain.ports import BATCH_ROWS, RequestLogRetention

_LOGS: Table = RequestLogModel.__table__  # type: ignore[assignment]


class SqlRequestLogRetention(RequestLogRetention):
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self._partitioned = self._dialect == "postgresql"

    async def prepare(self, now: datetime, months_ahead: int) -> Sequence[str]:
        if not self._partitioned:
            return []
        return await partitions.create_ahead(self._engine, now, months_ahead)

    async def expire(self, before: datetime, *, batch_rows: int = BATCH_ROWS) -> int:
        removed = 0
        source: Table | TableClause = _LOGS
        if self._partitioned:
            removed += await partitions.drop_expired(self._engine, before)
            # What is left before the cutoff in month partitions waits for the month to
            # go; rows the default partition took are deleted as on SQLite.
            source = partitions.logs_table(partitions.DEFAULT_PARTITION)

        async def batch() -> tuple[int, bool]:
            gone = await self._expire_batch(source, before, batch_rows)
            return gone, gone == batch_rows

        return removed + await paced_batches(batch)

    async def _expire_batch(
        self, source: Table | TableClause, before: datetime, batch_rows: int
    ) -> int:
        oldest = select(source.c.id).where(source.c.created_at < before).limit(batch_rows)
        async with self._engine.begin() as conn:
            if self._partitioned:
                await partitions.lock(conn)  # the batch is chosen under it: no replica's twice
            ids = list((await conn.execute(oldest)).scalars())
            if not ids:
                return 0
            chosen: Any = source.c.id.in_(ids)
            await conn.execute(rollup.roll_up(self._dialect, source, chosen))
            result = await conn.execute(delete(source).where(chosen))
        return int(result.rowcount)

    async def daily_usage(
        self,
        since: date,
        until: date,
        *,
        key_id: str | None = None,
        model: str | None = None,
        team_id: str | None = None,
    ) -> Sequence[DailyUsage]:
        async with self._engine.connect() as conn:
            return await rollup.daily_usage(
                conn, since, until, key_id=key_id, model=model, team_id=team_id
            )
