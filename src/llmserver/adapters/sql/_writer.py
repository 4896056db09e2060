"""Background write transactions (request-log batches, written-behind usage and cache).

On SQLite they run on the event loop's own thread with a plain ``sqlite3`` connection,
in chunks of ``CHUNK_ROWS`` between which requests run, which sounds wrong and measures
right. Through aiosqlite every DBAPI call is a trip to its
thread and back; a writer thread of our own is no better, because a thread that needs the
GIL while the loop thread serves requests gets a sliver of it: under 32 busy connections a
500-row log batch took 0.4-2 s either way and the queue grew without bound. Inline, a batch
costs the loop a few milliseconds (rows are bound with the columns' own type processors and
sent with one ``executemany``, not compiled per row) and the busy timeout is zero, so a
lock held elsewhere fails the flush, which its caller retries, instead of stalling the loop.

Postgres (asyncpg) is natively asynchronous and keeps the async engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.ext.asyncio import AsyncEngine

from llmserver.adapters.sql._engine import sqlite_pragmas

Statement = tuple[Any, Any]
"""An executable and its parameters: a dict, a list of dicts (executemany), or None."""

_Binder = tuple[str, Callable[[Any], Any] | None]

CHUNK_ROWS = 64
"""Rows bound and sent per turn of the event loop: about 3 ms of it at most."""


class TransactionWriter:
    def __init__(self, engine: AsyncEngine) -> None:
        self._async = engine
        self._sync: Engine | None = None
        self._compiled: dict[int, tuple[Any, str, list[_Binder]]] = {}
        self._turn = asyncio.Lock()
        """One inline transaction at a time: the pool holds one connection."""
        url = engine.url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            self._sync = create_sync_engine(
                url.set(drivername="sqlite"),
                pool_size=1,
                max_overflow=0,
                connect_args={"timeout": 0},
            )
            event.listen(self._sync, "connect", sqlite_pragmas)
            event.listen(self._sync, "connect", _no_busy_wait)

    async def run(self, statements: Sequence[Statement]) -> None:
        """Execute the statements in one transaction."""
        if not statements:
            return
        if self._sync is None:
            async with self._async.begin() as conn:
                for statement, params in statements:
                    await conn.execute(statement, params)
            return
        async with self._turn:
            with self._sync.begin() as conn:
                for statement, params in statements:
                    if not (isinstance(params, list) and params):
                        conn.execute(statement, params)
                        continue
                    sql, binders = self._compile(statement, params[0])
                    for start in range(0, len(params), CHUNK_ROWS):
                        if start:
                            # Let requests run between chunks; the transaction stays open.
                            await asyncio.sleep(0)
                        rows = [
                            tuple(row[n] if bind is None else bind(row[n]) for n, bind in binders)
                            for row in params[start : start + CHUNK_ROWS]
                        ]
                        conn.exec_driver_sql(sql, rows)

    def _compile(self, statement: Any, sample: dict[str, Any]) -> tuple[str, list[_Binder]]:
        """The statement's SQL and, per positional parameter, its name and type processor.

        Cached per statement object: callers pass statements built once, not per call.
        """
        cached = self._compiled.get(id(statement))
        if cached is not None and cached[0] is statement:
            return cached[1], cached[2]
        assert self._sync is not None
        dialect = self._sync.dialect
        compiled = statement.compile(dialect=dialect, column_keys=list(sample))
        binders: list[_Binder] = []
        for name in compiled.positiontup:
            kind = compiled.binds[name].type
            binders.append((name, kind.dialect_impl(dialect).bind_processor(dialect)))
        self._compiled[id(statement)] = (statement, compiled.string, binders)
        return compiled.string, binders

    def dispose(self) -> None:
        if self._sync is not None:
            self._sync.dispose()


def _no_busy_wait(dbapi_connection: Any, _record: Any) -> None:
    # After sqlite_pragmas, which sets the busy timeout the other connections want.
    dbapi_connection.execute("PRAGMA busy_timeout=0")
