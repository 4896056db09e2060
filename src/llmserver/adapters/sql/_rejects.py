"""Which write errors reject the rows themselves, as opposed to a database that is away.

A rejection fails the same way however often it is retried, so the background writers set
the offending rows aside (``RowsRejected``); anything else keeps the rows queued for a retry.

* PostgreSQL: SQLAlchemy's asyncpg adapter raises a plain ``DBAPIError`` for a data error
  (its ``DataError`` class is never used), so the SQLSTATE decides: class 22 (data
  exception: a value too long for its column, a NUL character in text or JSON) and class
  23 (integrity constraint violation) reject rows.
* SQLite (``sqlite3``, inline or in the writer process): ``IntegrityError`` or
  ``DataError``, which SQLAlchemy raises under those names.
* A value no bind processor takes (a naive datetime) fails in SQLAlchemy before reaching
  the database: a ``StatementError`` that is not a ``DBAPIError``.

Everything else (connection refused or lost, a server shutting down or starting, a locked
SQLite file, a table not migrated yet) counts as an outage. When unsure, retrying is the
safe way to be wrong: it delays rows, where setting them aside loses them.
"""

from __future__ import annotations

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from llmserver.domain.ports import RowsRejected

_ROW_SQLSTATE_CLASSES = ("22", "23")


def rejection(exc: BaseException) -> RowsRejected | None:
    """The ``RowsRejected`` that ``exc`` amounts to, or ``None`` if it is an outage.

    Its message is the database's own, without the statement and its parameters (which
    hold request bodies when body logging is on)."""
    if isinstance(exc, RowsRejected):
        return exc
    if not isinstance(exc, StatementError):
        return None
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return None
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        by_state = isinstance(sqlstate, str) and sqlstate.startswith(_ROW_SQLSTATE_CLASSES)
        if not (by_state or isinstance(exc, DataError | IntegrityError)):
            return None
    return RowsRejected(f"{type(exc.orig).__name__}: {exc.orig}")
