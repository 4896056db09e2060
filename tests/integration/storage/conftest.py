from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from llmserver.adapters.sql import migrate


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A brand-new, unmigrated database of each kind."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'storage.db'}"
    make: Callable[[], str] = request.getfixturevalue("make_postgres_database")
    return make()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def migrated_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database of each kind (the Postgres one is shared by the session)."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("migrated_postgres_url")
        return url
    url = f"sqlite+aiosqlite:///{tmp_path / 'storage.db'}"
    asyncio.run(migrate.upgrade(url))
    return url


@pytest.fixture
def fresh_postgres_url(make_postgres_database: Callable[[], str]) -> str:
    """A database of its own, for tests that make it unavailable."""
    return make_postgres_database()
