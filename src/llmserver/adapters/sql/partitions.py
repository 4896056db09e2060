"""PostgreSQL's request_logs: partitioned by month of ``created_at`` (migration 0003).

One partition per UTC month, ``request_logs_pYYYYMM``, plus ``request_logs_default`` for
any row no month holds, so an insert never fails for want of a partition. The app makes
this month's partition and the next ones ahead of time (``create_ahead``); retention drops
a month's partition whole once all of the month is past the window (``drop_expired``),
which frees its space at once where deleting rows would leave a bloated table to vacuum.

Every change here runs under one transaction-level advisory lock (``lock``), so replicas
take turns, and with a lock timeout: dropping or creating a partition needs a brief
exclusive lock on the parent table, and waiting behind a long query for it would queue
every log insert behind the wait.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime

from sqlalchemy import Table, column, table, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import TableClause

from llmserver.adapters.sql.models import RequestLogModel
from llmserver.adapters.sql.rollup import roll_up

_LOGS: Table = RequestLogModel.__table__  # type: ignore[assignment]

DEFAULT_PARTITION = "request_logs_default"
_MONTHLY = re.compile(r"request_logs_p(\d{4})(\d{2})")
_NAMES = re.compile(rf"{_MONTHLY.pattern}|{DEFAULT_PARTITION}")

LOCK_KEY = 0x6C6C6D5F6C6F6773  # "llm_logs": one key for every change to the log's storage
LOCK_TIMEOUT = "5s"


def is_partition(name: str) -> bool:
    """Whether ``name`` is one of request_logs' partitions (which the models leave out)."""
    return _NAMES.fullmatch(name) is not None


def month_start(year: int, month: int) -> date:
    """The first day of ``month`` of ``year``; months past 12 or below 1 roll over."""
    return date(year + (month - 1) // 12, (month - 1) % 12 + 1, 1)


def partition_name(month: date) -> str:
    return f"request_logs_p{month:%Y%m}"


def logs_table(name: str) -> TableClause:
    """One partition, with request_logs' columns, for statements on it alone."""
    return table(name, *(column(c.name, c.type) for c in _LOGS.c))


async def lock(conn: AsyncConnection) -> None:
    """Wait for the other replicas' changes to the log's storage; held until commit."""
    await conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})


async def monthly_partitions(conn: AsyncConnection) -> dict[str, date]:
    names = await conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'request_logs'::regclass"
        )
    )
    found = {}
    for (name,) in names:
        match = _MONTHLY.fullmatch(name)
        if match is not None:
            found[name] = month_start(int(match[1]), int(match[2]))
    return found


def _bound(day: date) -> str:
    return f"'{day.isoformat()} 00:00:00+00'"


async def create_ahead(engine: AsyncEngine, now: datetime, months_ahead: int) -> Sequence[str]:
    """Create the partitions of this month and ``months_ahead`` more that are missing; rows
    the default partition took for such a month move into it. Returns the names created."""
    today = now.astimezone(UTC).date()
    wanted = [month_start(today.year, today.month + n) for n in range(months_ahead + 1)]
    created = []
    for month in wanted:
        name = partition_name(month)
        async with engine.begin() as conn:
            await lock(conn)
            if name in await monthly_partitions(conn):
                continue
            await _create(conn, name, month)
        created.append(name)
    return created


async def _create(conn: AsyncConnection, name: str, month: date) -> None:
    start, end = _bound(month), _bound(month_start(month.year, month.month + 1))
    in_month = f"created_at >= {start} AND created_at < {end}"
    # The default partition may hold rows of this month (written before it existed), and
    # PostgreSQL refuses a partition whose rows the default one holds: move them.
    await conn.execute(
        text(
            f"CREATE TEMP TABLE request_logs_moving ON COMMIT DROP AS "
            f"SELECT * FROM {DEFAULT_PARTITION} WHERE {in_month}"
        )
    )
    await conn.execute(text(f"DELETE FROM {DEFAULT_PARTITION} WHERE {in_month}"))
    await conn.execute(
        text(f"CREATE TABLE {name} PARTITION OF request_logs FOR VALUES FROM ({start}) TO ({end})")
    )
    await conn.execute(text("INSERT INTO request_logs SELECT * FROM request_logs_moving"))


async def drop_expired(engine: AsyncEngine, before: datetime) -> int:
    """Roll up, then drop, every monthly partition that ends at or before ``before``, one
    transaction each. Returns the rows they held."""
    cutoff = before.astimezone(UTC).date()
    async with engine.connect() as conn:
        months = await monthly_partitions(conn)
    removed = 0
    for name, month in sorted(months.items(), key=lambda item: item[1]):
        if month_start(month.year, month.month + 1) > cutoff:
            break
        async with engine.begin() as conn:
            await lock(conn)
            if name not in await monthly_partitions(conn):
                continue  # another replica dropped it meanwhile
            # Writers of this month's rows (none, normally) wait until the drop commits,
            # so the roll-up counts every row that goes.
            await conn.execute(text(f"LOCK TABLE {name} IN EXCLUSIVE MODE"))
            rows = (await conn.execute(text(f"SELECT count(*) FROM {name}"))).scalar_one()
            if rows:
                await conn.execute(roll_up("postgresql", logs_table(name), text("true")))
            await conn.execute(text(f"DROP TABLE {name}"))
        removed += rows
    return removed
