"""SQL storage adapters (Postgres through asyncpg, SQLite through aiosqlite)."""

from llmserver.adapters.sql.cache import SqlCompletionCache
from llmserver.adapters.sql.database import SqlDatabase
from llmserver.adapters.sql.keys import SqlKeyStore
from llmserver.adapters.sql.logs import SqlRequestLogStore
from llmserver.adapters.sql.usage import SqlUsageStore

__all__ = [
    "SqlCompletionCache",
    "SqlDatabase",
    "SqlKeyStore",
    "SqlRequestLogStore",
    "SqlUsageStore",
]
