"""Named writes on a synchronous connection, rows bound positionally.

Shared by the two SQLite write paths: inline on the event loop (``_writer``) and the writer
process (``writer_process``). Rows are bound with the columns' own type processors and sent
with one ``executemany`` per chunk of ``CHUNK_ROWS``, not compiled per row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import URL

from llmserver.adapters.sql._engine import sqlite_pragmas
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
