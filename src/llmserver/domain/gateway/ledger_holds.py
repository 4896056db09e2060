"""Holding tokens of a monthly quota and nanodollars of a budget in a ledger, refusing with
what is left and when it resets: the same for a key's ledgers, its per-model quota's and
its team's (``whose`` names the last two in a refusal)."""

from __future__ import annotations

from datetime import datetime

from llmserver.domain.budget import BudgetWindow, usd, window_period, window_reset_at
from llmserver.domain.errors import BudgetExceeded, QuotaExceeded
from llmserver.domain.ports import UsageStore


async def hold_tokens(
    ledger: UsageStore, ledger_id: str, period: str, tokens: int, quota: int | None, **whose: str
) -> None:
    """``tokens`` of ``ledger_id``'s ``quota`` (``None``: counted, never refused) in the
    month ``period``; ``QuotaExceeded`` when they do not fit."""
    result = await ledger.reserve(ledger_id, period, tokens, quota)
    if not result.admitted:
        assert quota is not None
        raise QuotaExceeded(
            needed=tokens,
            remaining=result.record.remaining(quota),
            quota=quota,
            reset_at=window_reset_at(period),
            **whose,
        )


async def hold_spend(
    ledger: UsageStore,
    ledger_id: str,
    budget: int,
    window: BudgetWindow,
    needed: int,
    at: datetime,
    **whose: str,
) -> str:
    """``needed`` nanodollars of ``ledger_id``'s ``budget`` in the ``window`` that ``at``
    falls in (the period returned); ``BudgetExceeded`` when they do not fit."""
    period = window_period(window, at)
    result = await ledger.reserve(ledger_id, period, needed, budget)
    if not result.admitted:
        raise BudgetExceeded(
            needed_usd=usd(needed),
            remaining_usd=usd(result.record.remaining(budget)),
            budget_usd=usd(budget),
            window=window.value,
            reset_at=window_reset_at(period),
            **whose,
        )
    return period
