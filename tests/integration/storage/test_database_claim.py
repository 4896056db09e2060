"""A single-process server claims its database; a second one is refused, naming the fix."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

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
