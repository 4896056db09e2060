from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from llmserver.adapters.sql._dialect import SUPPORTED_DIALECTS

SQLITE_BUSY_TIMEOUT_MS = 30_000


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; the busy timeout makes concurrent
    # writers (several connections or processes) wait for the lock instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """An async engine for a ``postgresql+asyncpg://`` or ``sqlite+aiosqlite://`` URL.

    ``hide_parameters``: a failed statement's error text (which the log writers put in their
    warnings) must not carry its values: request bodies, when they are logged, are among them.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_DIALECTS:
        raise ValueError(
            f"unsupported database URL scheme {backend!r}: use postgresql+asyncpg:// "
            "or sqlite+aiosqlite:///path"
        )
    if backend == "sqlite":
        # An in-memory database lives in one connection: every session must share it.
        in_memory = parsed.database in (None, "", ":memory:")
        # SQLite has one writer. With a pool of connections, concurrent requests fight over
        # the file lock and SQLite's busy handler sleeps between retries (p99 over a second
        # at 32 clients). One connection per process queues statements in memory instead.
        pool: dict[str, Any] = (
            {"poolclass": StaticPool}
            if in_memory
            else {"pool_size": 1, "max_overflow": 0, "pool_timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )
        engine = create_async_engine(
            url,
            echo=echo,
            hide_parameters=True,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            **pool,
        )
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        return engine
    # pre_ping replaces connections a database restart has broken instead of failing
    # the first request (or log flush) after it.
    return create_async_engine(url, echo=echo, hide_parameters=True, pool_pre_ping=True)
