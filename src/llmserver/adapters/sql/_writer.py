"""Background write transactions: request-log batches, written-behind usage and cache.

Where they run matters more than what they do. Through aiosqlite every DBAPI call is a trip
to its thread and back; a writer thread of our own is no better, because a thread that
needs the GIL while the loop thread serves requests gets a sliver of it: under 32 busy
connections a 500-row log batch took 0.4-2 s either way and the queue grew without bound.

So on a SQLite file the writes run either

* in a writer process of their own (``process=True``, what the server uses): the serving
  process only encodes rows and sends them over a pipe, and SQLite's inserts and commits use
  another core; or
* inline on the event loop with a plain ``sqlite3`` connection, in chunks of
  ``CHUNK_ROWS`` between which requests run, with a busy timeout of zero so that a lock held
  elsewhere fails the write (its caller retries) instead of stalling the loop.

Either way rows are bound with the columns' own type processors and sent with one
``executemany`` per chunk, not compiled per row. Postgres (asyncpg) is natively
asynchronous and keeps the async engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from llmserver.adapters.sql._engine import sqlite_pragmas
from llmserver.adapters.sql._rejects import rejection
from llmserver.adapters.sql._writes import write_statements

Op = tuple[str, list[dict[str, Any]]]
"""A named write (see ``_writes``) and its rows."""

CHUNK_ROWS = 64
"""Rows bound and sent per turn of the event loop when writing inline: about 3 ms of it."""

_Binder = tuple[str, Callable[[Any], Any] | None]


class RowBinder:
    """Runs named writes on a synchronous connection, binding rows positionally."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._statements = write_statements(dialect.name)
        self._compiled: dict[tuple[str, tuple[str, ...]], tuple[str, list[_Binder]]] = {}

    def _compile(self, name: str, sample: dict[str, Any]) -> tuple[str, list[_Binder]]:
        columns = tuple(sample)
        cached = self._compiled.get((name, columns))
        if cached is None:
            compiled = self._statements[name].compile(
                dialect=self._dialect, column_keys=list(columns)
            )
            binders: list[_Binder] = [
                (
                    param,
                    compiled.binds[param]
                    .type.dialect_impl(self._dialect)
                    .bind_processor(self._dialect),
                )
                for param in compiled.positiontup
            ]
            cached = self._compiled[(name, columns)] = (compiled.string, binders)
        return cached

    def steps(self, conn: Connection, ops: Sequence[Op]) -> Iterator[None]:
        """Execute the ops, pausing (yielding) between chunks of ``CHUNK_ROWS`` rows."""
        for name, rows in ops:
            if not rows:
                continue
            sql, binders = self._compile(name, rows[0])
            for start in range(0, len(rows), CHUNK_ROWS):
                if start:
                    yield
                conn.exec_driver_sql(
                    sql,
                    [
                        tuple(row[p] if bind is None else bind(row[p]) for p, bind in binders)
                        for row in rows[start : start + CHUNK_ROWS]
                    ],
                )


def sqlite_sync_engine(url: URL, *, busy_timeout_ms: int) -> Engine:
    """A plain ``sqlite3`` engine on the same file, one connection."""
    engine = create_sync_engine(
        url.set(drivername="sqlite"),
        hide_parameters=True,  # as ``create_engine``: no row values in error texts
        pool_size=1,
        max_overflow=0,
        connect_args={"timeout": busy_timeout_ms / 1000},
    )
    event.listen(engine, "connect", sqlite_pragmas)

    def busy_timeout(dbapi_connection: Any, _record: Any) -> None:
        # After sqlite_pragmas, which sets the timeout the other connections want.
        dbapi_connection.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")

    event.listen(engine, "connect", busy_timeout)
    return engine


class TransactionWriter:
    def __init__(self, engine: AsyncEngine, *, process: bool = False) -> None:
        self._async = engine
        self._statements: dict[str, Any] = {}
        """For the async engine only; the inline binder and the process have their own."""
        self._sync: Engine | None = None
        self._binder: RowBinder | None = None
        self._process: Any = None
        self._turn = asyncio.Lock()
        """One inline transaction at a time: the pool holds one connection."""
        url = engine.url
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            self._statements = write_statements(engine.dialect.name)
        elif process:
            from llmserver.adapters.sql.writer_process import WriterProcess

            self._process = WriterProcess(url.render_as_string(hide_password=False))
        else:
            self._sync = sqlite_sync_engine(url, busy_timeout_ms=0)
            self._binder = RowBinder(self._sync.dialect)

    async def start(self) -> None:
        """Start the writer process now rather than on the first write, if there is one."""
        if self._process is not None:
            await self._process.start()

    async def run(self, ops: Sequence[Op]) -> None:
        """Execute the named writes in one transaction; ``RowsRejected`` if the database
        refused their values (see ``_rejects``)."""
        ops = [op for op in ops if op[1]]
        if not ops:
            return
        if self._process is not None:
            await self._process.run(ops)  # classifies its errors where it sees them
            return
        try:
            if self._sync is not None and self._binder is not None:
                async with self._turn:
                    with self._sync.begin() as conn:
                        for _ in self._binder.steps(conn, ops):
                            await asyncio.sleep(0)  # requests run; the transaction stays open
            else:
                async with self._async.begin() as conn:
                    for name, rows in ops:
                        await conn.execute(self._statements[name], rows)
        except Exception as exc:
            rejected = rejection(exc)
            if rejected is None:
                raise
            raise rejected from exc

    async def dispose(self) -> None:
        if self._process is not None:
            await self._process.close()
        if self._sync is not None:
            self._sync.dispose()
