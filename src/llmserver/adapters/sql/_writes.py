"""Every background write, by name: one constant statement each, run with a list of rows.

Named so that the same write can run on the event loop, through the async engine, or in
the SQLite writer process, which receives names and rows, never SQL.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, bindparam, insert, update

from llmserver.adapters.sql._dialect import upsert_insert
from llmserver.adapters.sql.models import (
    BudgetSpendModel,
    CompletionCacheModel,
    KeyModelUsageModel,
    RequestLogModel,
    UsageModel,
)

_LOGS: Table = RequestLogModel.__table__  # type: ignore[assignment]
_CACHE: Table = CompletionCacheModel.__table__  # type: ignore[assignment]
_USAGE: Table = UsageModel.__table__  # type: ignore[assignment]
_BUDGET: Table = BudgetSpendModel.__table__
_MODEL_USAGE: Table = KeyModelUsageModel.__table__

REQUEST_LOGS = "request_logs.insert"
CACHE_ENTRIES = "completion_cache.upsert"
CACHE_HITS = "completion_cache.add_hits"
"""Rows ``{"k": key, "n": hits, "at": latest hit}``."""
USAGE_TOTALS = "usage.add"
"""Rows ``{key_id, period, used_tokens, requests, cache_hits}``, added to what is stored."""
BUDGET_TOTALS = "budget_spend.add"
"""``USAGE_TOTALS`` for the budget ledger (``used_tokens`` is spent nanodollars)."""
MODEL_USAGE_TOTALS = "key_model_usage.add"
"""``USAGE_TOTALS`` for the per-model quotas' ledger (rows with ``model_id`` too)."""
LEDGER_TOTALS = {
    _USAGE.name: USAGE_TOTALS,
    _BUDGET.name: BUDGET_TOTALS,
    _MODEL_USAGE.name: MODEL_USAGE_TOTALS,
}
"""A ledger table's write of its totals, by table name."""


def _add_totals(dialect: str, table: Table) -> Any:
    usage = upsert_insert(dialect, table)
    return usage.on_conflict_do_update(
        index_elements=list(table.primary_key.columns),
        set_={
            name: table.c[name] + usage.excluded[name]
            for name in ("used_tokens", "requests", "cache_hits")
        },
    )


def write_statements(dialect: str) -> dict[str, Any]:
    cache = upsert_insert(dialect, _CACHE)
    return {
        REQUEST_LOGS: insert(_LOGS),
        CACHE_ENTRIES: cache.on_conflict_do_update(
            index_elements=[_CACHE.c.key],
            set_={c.name: cache.excluded[c.name] for c in _CACHE.c if c.name != "key"},
        ),
        CACHE_HITS: update(_CACHE)
        .where(_CACHE.c.key == bindparam("k"))
        .values(hit_count=_CACHE.c.hit_count + bindparam("n"), last_hit_at=bindparam("at")),
        USAGE_TOTALS: _add_totals(dialect, _USAGE),
        BUDGET_TOTALS: _add_totals(dialect, _BUDGET),
        MODEL_USAGE_TOTALS: _add_totals(dialect, _MODEL_USAGE),
    }
