"""Migration 0006 on data: keys created before it have no TPM or parallel limit, keys after
it keep the largest legal ones, and the downgrade drops the two columns and no key."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import insert

from integration.storage.schema_probe import column_names, row_count
from llmserver.adapters.sql import SqlDatabase, migrate
from llmserver.adapters.sql._records import columns
from llmserver.adapters.sql.models import ApiKeyModel
from llmserver.domain.key_limits import MAX_PARALLEL, MAX_TPM
from llmserver.domain.keys import ApiKey, Role

OLD = ApiKey(
    id="k" * 64,
    name="é" * 200,
    prefix="abcdefghijkl",
    key_hash="h" * 64,
    role=Role.USER,
    created_at=datetime(2026, 11, 30, 12, tzinfo=UTC),
    quota_tokens=1_000,
    rpm_limit=60,
    allowed_models=("demo",),
)
_LATER = (
    "tpm_limit",
    "max_parallel",
    "model_limits",
    "budget_nanodollars",
    "budget_window",
    "team_id",
)
"""What 0006 and later migrations add."""
ROW = {n: v for n, v in columns(OLD).items() if n not in _LATER}
"""A key as 0005 holds it."""


async def test_0006_leaves_old_keys_unlimited_and_its_downgrade_keeps_every_key(
    empty_database_url: str,
) -> None:
    db = SqlDatabase.from_url(empty_database_url)
    new = replace(
        OLD, id="n" * 64, prefix="mnopqrstuvwx", tpm_limit=MAX_TPM, max_parallel=MAX_PARALLEL
    )
    try:
        await migrate.upgrade(empty_database_url, "0005")
        async with db.engine.begin() as conn:
            # The model's table for its column types; the row names only 0005's columns.
            await conn.execute(insert(ApiKeyModel).values(ROW))

        # To the head, not 0006: the store reads tables later migrations add.
        await migrate.upgrade(empty_database_url)
        await db.engine.dispose()
        assert await db.keys.get(OLD.id) == OLD
        await db.keys.add(new)
        assert await db.keys.get(new.id) == new

        await migrate.downgrade(empty_database_url, "0005")
        await db.engine.dispose()
        assert not {"tpm_limit", "max_parallel"} & await column_names(db, "api_keys")
        assert await row_count(db, "api_keys") == 2

        await migrate.upgrade(empty_database_url)
        await db.engine.dispose()
        # The limits went with the columns: both keys are back to none.
        assert await db.keys.get(new.id) == replace(new, tpm_limit=None, max_parallel=None)
        assert await db.keys.get(OLD.id) == OLD
    finally:
        await db.dispose()
