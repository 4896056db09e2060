"""A failed write's error text, which the log writers put in their warnings, carries no row
values: with ``LLMSERVER_LOG_BODIES`` a request body is one of them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from llmserver.adapters.sql._engine import create_engine
from llmserver.adapters.sql._row_binder import sqlite_sync_engine

SECRET = "a-prompt-nobody-else-may-read"
MISSING_TABLE = text("INSERT INTO no_such_table (body) VALUES (:body)")


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/errors.db"
    return str(request.getfixturevalue("postgres_url"))


async def test_an_async_engine_error_names_no_value(url: str) -> None:
    engine = create_engine(url)
    try:
        with pytest.raises(DBAPIError) as failed:
            async with engine.begin() as conn:
                await conn.execute(MISSING_TABLE, {"body": SECRET})
    finally:
        await engine.dispose()
    assert "no_such_table" in str(failed.value)
    assert SECRET not in str(failed.value)


def test_the_writer_process_engine_error_names_no_value(tmp_path: Path) -> None:
    engine = sqlite_sync_engine(
        make_url(f"sqlite+aiosqlite:///{tmp_path}/errors.db"), busy_timeout_ms=1000
    )
    try:
        with pytest.raises(DBAPIError) as failed, engine.begin() as conn:
            conn.execute(MISSING_TABLE, {"body": SECRET})
    finally:
        engine.dispose()
    assert "no_such_table" in str(failed.value)
    assert SECRET not in str(failed.value)
