"""Migration 0008 on data: keys created before it have no per-model limit, limits stored
after it come back with their keys (the longest legal model id, the largest legal limits),
and the downgrade drops them and no key."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import insert

from integration.storage.schema_probe import row_count, table_names
from llmserver.adapters.sql import SqlDatabase, migrate
from llmserver.adapters.sql._records import columns
from llmserver.adapters.sql.models import ApiKeyModel
from llmserver.domain.key_limits import MAX_RPM, MAX_TPM, ModelLimit
from llmserver.domain.keys import ApiKey, Role
from llmserver.domain.registry import MODEL_ID_MAX_CHARS

OLD = ApiKey(
    id="k" * 64,
    name="é" * 200,
    prefix="abcdefghijkl",
    key_hash="h" * 64,
    role=Role.USER,
    created_at=datetime(2026, 11, 30, 12, tzinfo=UTC),
    quota_tokens=1_000,
    rpm_limit=60,
    tpm_limit=5_000,
    allowed_models=("demo",),
)
ROW = {n: v for n, v in columns(OLD).items() if n not in ("model_limits", "team_id")}
"""A key as 0007 holds it."""
LIMITS = (
    ModelLimit("tiny", rpm_limit=5),
    ModelLimit("é" * MODEL_ID_MAX_CHARS, rpm_limit=MAX_RPM, tpm_limit=MAX_TPM),
)
"""Sorted by model id, by code point (as the domain sorts them)."""


async def test_0008_keeps_old_keys_unlimited_per_model_and_its_downgrade_keeps_every_key(
    empty_database_url: str,
) -> None:
    db = SqlDatabase.from_url(empty_database_url)
    new = replace(OLD, id="n" * 64, prefix="mnopqrstuvwx", model_limits=LIMITS)
    try:
        await migrate.upgrade(empty_database_url, "0007")
        async with db.engine.begin() as conn:
            await conn.execute(insert(ApiKeyModel).values(ROW))

        await migrate.upgrade(empty_database_url)  # 0008 and on: the stores are today's
        await db.engine.dispose()
        assert await db.keys.get(OLD.id) == OLD
        await db.keys.add(new)
        assert await db.keys.get(new.id) == new
        assert await db.keys.find_by_prefix(new.prefix) == new
        assert [k.model_limits for k in await db.keys.list()] == [(), LIMITS]
        # An update replaces the key's model limits as a whole.
        updated = await db.keys.update(replace(new, model_limits=LIMITS[1:]))
        assert updated == replace(new, model_limits=LIMITS[1:])

        await migrate.downgrade(empty_database_url, "0007")
        await db.engine.dispose()
        assert "key_model_limits" not in await table_names(db)
        assert await row_count(db, "api_keys") == 2

        await migrate.upgrade(empty_database_url)
        await db.engine.dispose()
        # The per-model limits went with the table; the keys' own limits stayed.
        assert await db.keys.get(new.id) == replace(new, model_limits=())
        assert await db.keys.get(OLD.id) == OLD
    finally:
        await db.dispose()
