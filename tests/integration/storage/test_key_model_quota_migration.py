"""Migration 0010 on data: per-model limits stored before it keep their RPM and TPM and get
no quota, quotas and the per-model ledger stored after it come back (the longest legal
model id, the largest legal quota and counts), and the downgrade drops the quotas and the
ledger and no key, limit or usage row."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import insert

from integration.storage.schema_probe import column_names, row_count, table_names
from llmserver.adapters.sql import SqlDatabase, migrate
from llmserver.adapters.sql._records import columns
from llmserver.adapters.sql.models import ApiKeyModel, KeyModelLimitModel
from llmserver.domain.key_limits import MAX_QUOTA_TOKENS, MAX_RPM, MAX_TPM, ModelLimit
from llmserver.domain.keys import ApiKey, Role
from llmserver.domain.quota import UsageRecord, model_ledger_id
from llmserver.domain.registry import MODEL_ID_MAX_CHARS

LONGEST = "é" * MODEL_ID_MAX_CHARS
OLD = ApiKey(
    id="k" * 64,
    name="é" * 200,
    prefix="abcdefghijkl",
    key_hash="h" * 64,
    role=Role.USER,
    created_at=datetime(2026, 11, 30, 12, tzinfo=UTC),
    quota_tokens=1_000,
    model_limits=(ModelLimit(LONGEST, rpm_limit=MAX_RPM, tpm_limit=MAX_TPM),),
)
KEY_ROW = {n: v for n, v in columns(OLD).items() if n not in ("model_limits", "team_id")}
LIMIT_ROW = {"key_id": OLD.id, "model_id": LONGEST, "rpm_limit": MAX_RPM, "tpm_limit": MAX_TPM}
"""A per-model limit as 0008 holds it."""
QUOTAS = (
    ModelLimit("tiny", quota_tokens=0),
    ModelLimit(LONGEST, rpm_limit=5, quota_tokens=MAX_QUOTA_TOKENS),
)


async def test_0010_gives_old_model_limits_no_quota_and_its_downgrade_keeps_every_row(
    empty_database_url: str,
) -> None:
    db = SqlDatabase.from_url(empty_database_url)
    new = replace(OLD, id="n" * 64, prefix="mnopqrstuvwx", model_limits=QUOTAS)
    counted = UsageRecord(model_ledger_id(new.id, LONGEST), "9999-12", 2**62, 0, 2**40, 2**40)
    try:
        await migrate.upgrade(empty_database_url, "0009")
        async with db.engine.begin() as conn:
            await conn.execute(insert(ApiKeyModel).values(KEY_ROW))
            await conn.execute(insert(KeyModelLimitModel).values(LIMIT_ROW))

        await migrate.upgrade(empty_database_url)
        await db.engine.dispose()
        assert await db.keys.get(OLD.id) == OLD
        await db.keys.add(new)
        assert await db.keys.get(new.id) == new
        await db.model_quota.add([counted])
        await db.usage.add([UsageRecord(new.id, "9999-12", 7, 0, 1, 0)])
        assert await db.model_quota.list() == [counted]

        await migrate.downgrade(empty_database_url, "0009")
        await db.engine.dispose()
        assert "key_model_usage" not in await table_names(db)
        assert "quota_tokens" not in await column_names(db, "key_model_limits")
        # Every limit row stays: a quota-only one as a row without limits, as 0008 could not
        # have held it; the key's own usage is untouched.
        assert await row_count(db, "key_model_limits") == 3
        assert await row_count(db, "api_keys") == 2
        assert await row_count(db, "usage") == 1

        await migrate.upgrade(empty_database_url)
        await db.engine.dispose()
        assert await db.keys.get(OLD.id) == OLD
        assert await db.model_quota.list() == []
        # The RPM limit on the longest model stayed; the quotas went with the column.
        stored = await db.keys.get(new.id)
        assert stored is not None
        assert [limit.limits() for limit in stored.model_limits] == [
            {"rpm_limit": None, "tpm_limit": None, "quota_tokens": None},
            {"rpm_limit": 5, "tpm_limit": None, "quota_tokens": None},
        ]
    finally:
        await db.dispose()
