"""What the migration tests read back after an upgrade or downgrade: the tables, a table's
columns and its row count, each on a connection of its own."""

from __future__ import annotations

from sqlalchemy import Connection, func, inspect, select, table

from llmserver.adapters.sql import SqlDatabase


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _columns(conn: Connection, name: str) -> set[str]:
    return {c["name"] for c in inspect(conn).get_columns(name)}


async def table_names(db: SqlDatabase) -> set[str]:
    async with db.engine.connect() as conn:
        return await conn.run_sync(_tables)


async def column_names(db: SqlDatabase, name: str) -> set[str]:
    async with db.engine.connect() as conn:
        return await conn.run_sync(_columns, name)


async def row_count(db: SqlDatabase, name: str) -> int:
    async with db.engine.connect() as conn:
        count: int = (
            await conn.execute(select(func.count()).select_from(table(name)))
        ).scalar_one()
    return count
