"""Where each key's budget stands in its current window: what the admin API, the console
and ``llmserver keys`` show."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from llmserver.domain.budget import (
    BudgetWindow,
    budget_nanodollars,
    window_period,
    window_reset_at,
)
from llmserver.domain.errors import InvalidRequest
from llmserver.domain.keys import ApiKey
from llmserver.domain.ports import UsageStore


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """Amounts in nanodollars."""

    key_id: str
    window: BudgetWindow
    period: str
    budget: int
    spent: int
    reserved: int
    """Held by requests in flight (on this replica's view of the ledger)."""
    resets_at: datetime

    @property
    def remaining(self) -> int:
        return max(0, self.budget - self.spent - self.reserved)


async def budget_statuses(
    ledger: UsageStore, keys: Sequence[ApiKey], now: datetime
) -> list[BudgetStatus]:
    """The current window of every key in ``keys`` that has a budget."""
    statuses = []
    for key in keys:
        if key.budget_nanodollars is None:
            continue
        period = window_period(key.budget_window, now)
        record = await ledger.get(key.id, period)
        statuses.append(
            BudgetStatus(
                key.id,
                key.budget_window,
                period,
                key.budget_nanodollars,
                record.used_tokens,
                record.reserved_tokens,
                window_reset_at(period),
            )
        )
    return statuses


def parse_budget_usd(value: object) -> int:
    """A budget in dollars as an admin gave it, in nanodollars; ``InvalidRequest`` saying
    what is wrong."""
    try:
        return budget_nanodollars(value)
    except ValueError as exc:
        shown = str(value)[:40]
        raise InvalidRequest(f"budget_usd {exc} (got {shown!r}).", param="budget_usd") from None


def budget_window(value: str) -> BudgetWindow:
    """A window as given by an admin; ``InvalidRequest`` naming the choices."""
    try:
        return BudgetWindow(value)
    except ValueError:
        choices = ", ".join(w.value for w in BudgetWindow)
        raise InvalidRequest(
            f"Unknown budget window {value[:20]!r}: use one of {choices}.", param="budget_window"
        ) from None
