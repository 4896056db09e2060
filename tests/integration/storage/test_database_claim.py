"""A single-process server claims its database; a second one is refused, naming the fix."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from llmserver.adapters.sql import SqlDatabase
from llmserver.adapters.sql.ownership import DatabaseClaim, DatabaseClaimed


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'claimed.db'}"
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


async def test_a_database_is_claimed_by_one_process_at_a_time(database_url: str) -> None:
    first, second = SqlDatabase.from_url(database_url), SqlDatabase.from_url(database_url)
    try:
        claim = await DatabaseClaim.take(first.engine)
        with pytest.raises(DatabaseClaimed, match="LLMSERVER_DEPLOYMENT=replicas"):
            await DatabaseClaim.take(second.engine)
        await claim.release()

        again = await DatabaseClaim.take(second.engine)  # released: free to take
        await again.release()
    finally:
        await asyncio.gather(first.dispose(), second.dispose())


@pytest.mark.postgres
async def test_a_claim_on_postgres_holds_no_transaction_open(fresh_postgres_url: str) -> None:
    """The claim's session was left idle in a transaction for the server's whole life, which
    pinned the database's xmin horizon: VACUUM could then reclaim no row deleted or updated
    after the server started (the retention soak's 200k deleted rows kept all their pages)."""
    db, probe = SqlDatabase.from_url(fresh_postgres_url), SqlDatabase.from_url(fresh_postgres_url)
    try:
        claim = await DatabaseClaim.take(db.engine)
        async with probe.engine.connect() as conn:
            sessions = await conn.execute(
                text(
                    "SELECT state, backend_xmin FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            assert [tuple(s) for s in sessions] == [("idle", None)]
        await claim.release()
    finally:
        await asyncio.gather(db.dispose(), probe.dispose())
