from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Table, and_, case, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from llmserver.adapters.sql._dialect import upsert_insert
from llmserver.adapters.sql._writer import TransactionWriter
from llmserver.adapters.sql._writes import LEDGER_TOTALS
from llmserver.adapters.sql.models import BudgetSpendModel, KeyModelUsageModel, UsageModel
from llmserver.domain.ports import UsageStore
from llmserver.domain.quota import (
    ReservationResult,
    UsageRecord,
    model_ledger_id,
    split_model_ledger_id,
)

USAGE: Table = UsageModel.__table__  # type: ignore[assignment]
"""The token quota's ledger."""
BUDGET_SPEND: Table = BudgetSpendModel.__table__
"""The budgets' ledger, in nanodollars under the same column keys."""
KEY_MODEL_USAGE: Table = KeyModelUsageModel.__table__
"""The per-model quotas' ledger: a row per key, model and period, its ledger id
``quota.model_ledger_id``."""


def _ids(t: Table, key_id: str) -> dict[str, str]:
    """The id columns of ledger id ``key_id``'s rows: a per-model ledger's key and model."""
    if "model_id" in t.c:
        key, model = split_model_ledger_id(key_id)
        return {"key_id": key, "model_id": model}
    return {"key_id": key_id}


def _record(row: Row[Any]) -> UsageRecord:
    model_id = row._mapping.get("model_id")
    return UsageRecord(
        key_id=row.key_id if model_id is None else model_ledger_id(row.key_id, model_id),
        period=row.period,
        used_tokens=row.used_tokens,
        reserved_tokens=row.reserved_tokens,
        requests=row.requests,
        cache_hits=row.cache_hits,
    )


def _of(t: Table, key_id: str) -> Any:
    return and_(*(t.c[name] == value for name, value in _ids(t, key_id).items()))


def _row_of(t: Table, key_id: str, period: str) -> Any:
    return _of(t, key_id) & (t.c.period == period)


def _released(t: Table, reserved: int) -> Any:
    """``max(0, reserved_tokens - reserved)`` in SQL."""
    return case((t.c.reserved_tokens > reserved, t.c.reserved_tokens - reserved), else_=0)


class SqlUsageStore(UsageStore):
    """Usage counters where every change is one SQL statement on the row.

    ``reserve`` admits with a single conditional UPDATE: the database serialises
    concurrent updates of a row and re-checks the WHERE against the latest version, so
    no interleaving of requests, connections or processes can spend past the quota.
    """

    def __init__(
        self, engine: AsyncEngine, writer: TransactionWriter, table: Table = USAGE
    ) -> None:
        """``table``: ``USAGE`` (tokens), ``BUDGET_SPEND`` (nanodollars) or
        ``KEY_MODEL_USAGE`` (tokens per key and model)."""
        self._engine = engine
        self._dialect = engine.dialect.name
        self._writer = writer
        self._t = table
        self._totals = LEDGER_TOTALS[table.name]
        self._row_id = list(table.primary_key.columns)

    def _zero_row(self, key_id: str, period: str, **values: int) -> Any:
        zeros = {"reserved_tokens": 0, "used_tokens": 0, "requests": 0, "cache_hits": 0}
        return upsert_insert(
            self._dialect, self._t, **_ids(self._t, key_id), period=period, **(zeros | values)
        )

    async def reserve(
        self, key_id: str, period: str, tokens: int, quota: int | None
    ) -> ReservationResult:
        admit = (
            update(self._t)
            .where(_row_of(self._t, key_id, period))
            .values(reserved_tokens=self._t.c.reserved_tokens + tokens)
            .returning(*self._t.c)
        )
        if quota is not None:
            admit = admit.where(self._t.c.used_tokens + self._t.c.reserved_tokens + tokens <= quota)
        async with self._engine.begin() as conn:
            # The row exists for every request but a key's first in a period: try the
            # conditional update first, so the common case is one statement.
            admitted = (await conn.execute(admit)).one_or_none()
            if admitted is None:
                await conn.execute(self._zero_row(key_id, period).on_conflict_do_nothing())
                admitted = (await conn.execute(admit)).one_or_none()
            if admitted is not None:
                return ReservationResult(True, _record(admitted))
            current = (
                await conn.execute(select(self._t).where(_row_of(self._t, key_id, period)))
            ).one()
            return ReservationResult(False, _record(current))

    async def settle(
        self, key_id: str, period: str, reserved: int, used: int, *, cache_hit: bool = False
    ) -> None:
        hit = int(cache_hit)
        stmt = self._zero_row(
            key_id, period, used_tokens=used, requests=1, cache_hits=hit
        ).on_conflict_do_update(
            index_elements=self._row_id,
            set_={
                "reserved_tokens": _released(self._t, reserved),
                "used_tokens": self._t.c.used_tokens + used,
                "requests": self._t.c.requests + 1,
                "cache_hits": self._t.c.cache_hits + hit,
            },
        )
        async with self._engine.begin() as conn:
            await conn.execute(stmt)

    async def add(self, totals: Sequence[UsageRecord]) -> None:
        """Add settled usage (``used_tokens``, ``requests``, ``cache_hits``; reservations
        are ignored) in one transaction: how a process-local ledger writes behind."""
        rows = [
            {
                **_ids(self._t, t.key_id),
                "period": t.period,
                "used_tokens": t.used_tokens,
                "reserved_tokens": 0,
                "requests": t.requests,
                "cache_hits": t.cache_hits,
            }
            for t in totals
        ]
        await self._writer.run([(self._totals, rows)])

    async def release(self, key_id: str, period: str, reserved: int) -> None:
        stmt = self._zero_row(key_id, period).on_conflict_do_update(
            index_elements=self._row_id,
            set_={"reserved_tokens": _released(self._t, reserved)},
        )
        async with self._engine.begin() as conn:
            await conn.execute(stmt)

    async def get(self, key_id: str, period: str) -> UsageRecord:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(self._t).where(_row_of(self._t, key_id, period)))
            ).one_or_none()
        return UsageRecord(key_id, period) if row is None else _record(row)

    async def list(
        self, *, key_id: str | None = None, period: str | None = None
    ) -> Sequence[UsageRecord]:
        ids = [self._t.c[name] for name in _ids(self._t, "")]
        stmt = select(self._t).order_by(self._t.c.period, *ids)
        if key_id is not None:
            stmt = stmt.where(_of(self._t, key_id))
        if period is not None:
            stmt = stmt.where(self._t.c.period == period)
        async with self._engine.connect() as conn:
            return [_record(row) for row in await conn.execute(stmt)]
