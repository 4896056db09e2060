from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from llmserver.adapters.sql._engine import create_engine
from llmserver.adapters.sql._writer import TransactionWriter
from llmserver.adapters.sql.audit import SqlAuditLog
from llmserver.adapters.sql.cache import SqlCompletionCache
from llmserver.adapters.sql.keys import SqlKeyStore
from llmserver.adapters.sql.logs import SqlRequestLogStore
from llmserver.adapters.sql.retention import SqlRequestLogRetention
from llmserver.adapters.sql.teams import SqlTeamStore
from llmserver.adapters.sql.usage import BUDGET_SPEND, KEY_MODEL_USAGE, SqlUsageStore


class MigrationState(NamedTuple):
    current: str | None
    """The database's revision; ``None`` when it has no schema."""
    head: str | None
    """The code's head revision."""
    behind: bool
    """Whether the code needs a migration the database lacks: no schema, or one of the
    code's own revisions below head. A revision the code does not know is not behind: it
    is a later release's migration, which must keep this release working."""


class SqlDatabase:
    """One engine and the stores on it; built once by the composition root."""

    def __init__(self, engine: AsyncEngine, *, writer_process: bool = False) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.keys = SqlKeyStore(self.sessions, engine)
        self.teams = SqlTeamStore(engine)
        # Background writes (request logs, written-behind state); on a SQLite file, in a
        # process of their own when asked (the server does), else on the event loop.
        self.writer = TransactionWriter(engine, process=writer_process)
        self.usage = SqlUsageStore(engine, self.writer)
        self.budget = SqlUsageStore(engine, self.writer, BUDGET_SPEND)
        self.model_quota = SqlUsageStore(engine, self.writer, KEY_MODEL_USAGE)
        self.logs = SqlRequestLogStore(engine, self.writer)
        self.retention = SqlRequestLogRetention(engine)
        self.cache = SqlCompletionCache(engine, self.writer)
        self.audit = SqlAuditLog(engine)

    @classmethod
    def from_url(cls, url: str, *, echo: bool = False, writer_process: bool = False) -> SqlDatabase:
        return cls(create_engine(url, echo=echo), writer_process=writer_process)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def migration_state(self) -> MigrationState:
        # Alembic is imported on first use, not with the stores: `llmserver keys` would
        # pay its 0.2 s import for nothing.
        from llmserver.adapters.sql.migrate import current_revision, head_revision, newer_than_code

        async with self.engine.connect() as conn:
            current = await conn.run_sync(current_revision)
        head = head_revision()
        behind = current is None or (current != head and not newer_than_code(current))
        return MigrationState(current, head, behind)

    async def dispose(self) -> None:
        await self.writer.dispose()
        await self.engine.dispose()
