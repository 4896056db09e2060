"""Request-log usage per UTC day, key, team and model: rolled up into ``usage_daily`` as
retention removes rows, and read back together with the rows still live.

Retention rolls up exactly the rows it deletes, in the transaction that deletes them, so
a request is counted either in ``usage_daily`` or by its live row, never both and never
neither; ``daily_usage`` adds the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import Date, Table, case, func, select, type_coerce, union_all
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ColumnElement, Select, TableClause

from llmserver.adapters.sql._dialect import dialect_insert
from llmserver.adapters.sql.models import RequestLogModel, UsageDailyModel
from llmserver.domain.logs import CacheStatus, DailyUsage, day_bounds

_LOGS: Table = RequestLogModel.__table__  # type: ignore[assignment]
_DAILY: Table = UsageDailyModel.__table__  # type: ignore[assignment]

DIMENSIONS = ("day", "key_id", "team_id", "model")
"""What usage is rolled up by: ``usage_daily``'s primary key."""
COUNTS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cache_hits",
    "errors",
    "cost_picodollars",
)


def _day_of(dialect: str, created_at: Any) -> ColumnElement[date]:
    if dialect == "postgresql":
        return func.date(func.timezone("UTC", created_at))
    # SQLite holds UTC text ("2026-12-01 10:00:00.000000"); date() reads its day.
    return type_coerce(func.date(created_at), Date)


def _aggregate(dialect: str, logs: Table | TableClause, *where: Any) -> Select[Any]:
    """Usage of the rows of ``logs`` matching ``where``, as ``usage_daily``'s columns."""
    c = logs.c
    grouping = (
        _day_of(dialect, c.created_at),
        func.coalesce(c.key_id, ""),
        func.coalesce(c.team_id, ""),
        func.coalesce(c.model, ""),
    )
    counts = (
        func.count(),
        func.coalesce(func.sum(c.prompt_tokens), 0),
        func.coalesce(func.sum(c.completion_tokens), 0),
        func.sum(case((c.cache_status == CacheStatus.HIT.value, 1), else_=0)),
        func.sum(case((c.status >= 400, 1), else_=0)),
        func.coalesce(func.sum(c.cost_picodollars), 0),
    )
    # Typed as one sequence: mypy otherwise joins the two tuples' element types into a
    # clause type without ``label`` when another module changes its inference order.
    columns: tuple[ColumnElement[Any], ...] = (*grouping, *counts)
    labelled = [e.label(n) for e, n in zip(columns, (*DIMENSIONS, *COUNTS), strict=True)]
    return select(*labelled).where(*where).group_by(*grouping)


def roll_up(dialect: str, logs: Table | TableClause, *where: Any) -> Any:
    """Add the usage of the rows matching ``where`` to ``usage_daily`` (one statement).
    ``where`` must not be empty: SQLite parses ``INSERT ... SELECT ... ON CONFLICT`` only
    when the SELECT has a WHERE."""
    insert = dialect_insert(dialect, _DAILY).from_select(
        [*DIMENSIONS, *COUNTS], _aggregate(dialect, logs, *where)
    )
    return insert.on_conflict_do_update(
        index_elements=[_DAILY.c[name] for name in DIMENSIONS],
        set_={name: _DAILY.c[name] + insert.excluded[name] for name in COUNTS},
    )


async def daily_usage(
    conn: AsyncConnection,
    since: date,
    until: date,
    *,
    key_id: str | None = None,
    model: str | None = None,
    team_id: str | None = None,
) -> Sequence[DailyUsage]:
    start, end = day_bounds(since, until)
    live_where: list[Any] = [_LOGS.c.created_at >= start, _LOGS.c.created_at < end]
    rolled_where: list[Any] = [_DAILY.c.day >= since, _DAILY.c.day < until]
    for name, value in (("key_id", key_id), ("model", model), ("team_id", team_id)):
        if value is not None:
            live_where.append(_LOGS.c[name] == value)
            rolled_where.append(_DAILY.c[name] == value)
    rolled = select(*(_DAILY.c[name] for name in (*DIMENSIONS, *COUNTS))).where(*rolled_where)
    both = union_all(_aggregate(conn.dialect.name, _LOGS, *live_where), rolled).subquery()
    keys = [both.c[name] for name in DIMENSIONS]
    stmt = (
        select(
            type_coerce(both.c.day, Date).label("day"),
            both.c.key_id,
            both.c.team_id,
            both.c.model,
            *(func.sum(both.c[name]).label(name) for name in COUNTS),
        )
        .group_by(*keys)
        .order_by(*keys)
    )
    return [
        DailyUsage(
            day=row.day,
            key_id=row.key_id or None,
            team_id=row.team_id or None,
            model=row.model or None,
            **{name: int(getattr(row, name)) for name in COUNTS},
        )
        for row in await conn.execute(stmt)
    ]
