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
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from llmserver.adapters.sql._rejects import rejection
from llmserver.adapters.sql._row_binder import Op, RowBinder, sqlite_sync_engine
from llmserver.adapters.sql._writes import write_statements


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
            # Imported here, not at the top: the writer process runs this module as
            # ``__main__`` after its package (which imports this one) is loaded, and runpy
            # warns when the module is already in ``sys.modules`` by then.
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
