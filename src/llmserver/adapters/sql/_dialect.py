"""The one dialect-specific construct the stores need: ``INSERT ... ON CONFLICT``."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

SUPPORTED_DIALECTS = ("postgresql", "sqlite")


def upsert_insert(dialect_name: str, table: Table, **values: Any) -> Any:
    """An INSERT offering ``on_conflict_do_nothing`` / ``on_conflict_do_update``.

    Both dialects spell the clause the same way, so callers stay dialect-free.
    """
    return dialect_insert(dialect_name, table).values(**values)


def dialect_insert(dialect_name: str, table: Table) -> Any:
    """``upsert_insert`` without values yet (for ``from_select``)."""
    if dialect_name == "postgresql":
        return postgresql.insert(table)
    if dialect_name == "sqlite":
        return sqlite.insert(table)
    raise ValueError(
        f"unsupported database dialect {dialect_name!r}; use one of {SUPPORTED_DIALECTS}"
    )
