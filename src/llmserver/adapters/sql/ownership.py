"""One single-process server per database.

A ``single`` deployment trusts the quota ledger in its own memory; a second such process on
the same database would trust its own, and together they could spend past a quota. So a
single process claims the database for as long as it runs: an exclusive ``flock`` on a
``<database>.owner`` file beside a SQLite file, a session advisory lock on Postgres. Both
end with the process, however it ends.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

_PG_LOCK_KEY = 0x6C6C6D73657276  # "llmserv": any constant every server agrees on


class DatabaseClaimed(RuntimeError):
    pass


_CLAIMED = (
    "another single-process LLM Server already uses this database ({where}). Run one "
    "process per database, or run them all with LLMSERVER_DEPLOYMENT=replicas and "
    "LLMSERVER_REDIS_URL so that they share their limits."
)


class DatabaseClaim:
    def __init__(self, release: Any) -> None:
        self._release = release

    @classmethod
    async def take(cls, engine: AsyncEngine) -> DatabaseClaim:
        url = engine.url
        if url.get_backend_name() == "sqlite":
            if url.database in (None, "", ":memory:"):
                return cls(None)  # private to this process anyway
            return cls(_flock(Path(url.database)))
        conn = await engine.connect()
        try:
            # The lock is the session's: no transaction need stay open around it, and one
            # left idle for the server's life would pin the database's xmin horizon, so
            # that VACUUM could reclaim no row deleted or updated after the server started.
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            held = await conn.scalar(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": _PG_LOCK_KEY}
            )
        except BaseException:
            await conn.close()
            raise
        if not held:
            await conn.close()
            raise DatabaseClaimed(_CLAIMED.format(where=url.render_as_string()))
        return cls(conn)

    async def release(self) -> None:
        held, self._release = self._release, None
        if isinstance(held, AsyncConnection):
            # The pool keeps the session open, so the lock must be let go explicitly; if
            # that fails, dropping the connection ends the session and the lock with it.
            try:
                await held.scalar(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_LOCK_KEY})
                await held.close()
            except Exception:
                await held.invalidate()
        elif held is not None:
            os.close(held)


def _flock(database: Path) -> int:
    import fcntl

    path = database.with_name(database.name + ".owner")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DatabaseClaimed(_CLAIMED.format(where=str(database))) from None
    return fd
