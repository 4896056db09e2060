"""Migration 0007 on data: keys made before it have no budget and keep every setting, a
key and a window's spend up to the largest legal amounts round-trip after it, and the
downgrade drops the budget columns and table and no key."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import Table, insert

from integration.storage.schema_probe import column_names, row_count, table_names
from llmserver.adapters.sql import SqlDatabase, migrate
from llmserver.adapters.sql._records import columns
from llmserver.adapters.sql.models import ApiKeyModel
from llmserver.domain.budget import MAX_BUDGET_USD, BudgetWindow, budget_nanodollars
from llmserver.domain.keys import ApiKey, Role
from llmserver.domain.quota import UsageRecord

AT = datetime(2026, 11, 30, 12, tzinfo=UTC)
OLD = ApiKey(
    id="k" * 64,
    name="n" * 200,
    prefix="p" * 12,
    key_hash="h" * 64,
    role=Role.USER,
    created_at=AT,
    quota_tokens=10**15,
    rpm_limit=60,
    allowed_models=("demo",),
)
ROW = {
    name: value
    for name, value in columns(OLD).items()
    # Columns (and the model_limits table's rows) later migrations add.
    if name not in ("budget_nanodollars", "budget_window", "model_limits", "team_id")
}
"""The key as 0006 holds it."""
MOST = budget_nanodollars(MAX_BUDGET_USD)
KEYS: Table = ApiKeyModel.__table__  # type: ignore[assignment]


async def test_0007_gives_old_keys_no_budget_and_its_downgrade_keeps_every_key(
    empty_database_url: str,
) -> None:
    db = SqlDatabase.from_url(empty_database_url)
    try:
        await migrate.upgrade(empty_database_url, "0006")
        async with db.engine.begin() as conn:
            # The model's table, naming only the columns 0006 has: JSON is bound as JSON.
            await conn.execute(insert(KEYS).values(ROW))

        # To the head, not 0007: the store reads tables later migrations add.
        await migrate.upgrade(empty_database_url)
        await db.engine.dispose()
        assert await db.keys.get(OLD.id) == OLD  # no budget, a month's window
        budgeted = replace(
            OLD,
            id="b" * 64,
            prefix="b" * 12,
            budget_nanodollars=MOST,
            budget_window=BudgetWindow.WEEK,
        )
        await db.keys.add(budgeted)
        assert await db.keys.get(budgeted.id) == budgeted
        await db.budget.add([UsageRecord(OLD.id, "9999-12-31", MOST, 0, 2**40, 2**40)])
        assert await db.budget.list() == [UsageRecord(OLD.id, "9999-12-31", MOST, 0, 2**40, 2**40)]

        await migrate.downgrade(empty_database_url, "0006")
        await db.engine.dispose()
        names = await column_names(db, "api_keys")
        assert names.isdisjoint({"budget_nanodollars", "budget_window"})
        assert "budget_spend" not in await table_names(db)
        assert await row_count(db, "api_keys") == 2
    finally:
        await db.dispose()
