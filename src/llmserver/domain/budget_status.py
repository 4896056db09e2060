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
from llmserver.domain.period_records import PeriodRecords
from llmserver.domain.ports import UsageStore
from llmserver.domain.quota import UsageRecord


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
    """The current window of every key in ``keys`` that has a budget, read per window in
    use (``PeriodRecords``: at most three reads, however many keys), not a read per key."""
    budgets = [(key, key.budget_nanodollars) for key in keys if key.budget_nanodollars is not None]
    windows = {
        window: await PeriodRecords.of(
            ledger,
            window_period(window, now),
            {key.id for key, _ in budgets if key.budget_window is window},
        )
        for window in {key.budget_window for key, _ in budgets}
    }
    return [
        status_of(windows[key.budget_window].record(key.id), budget, key.budget_window)
        for key, budget in budgets
    ]


async def budget_status(
    ledger: UsageStore, ledger_id: str, budget: int, window: BudgetWindow, now: datetime
) -> BudgetStatus:
    """The current window of the budget counted under ``ledger_id`` (a key's id or a
    team's ledger id)."""
    return status_of(await ledger.get(ledger_id, window_period(window, now)), budget, window)


def status_of(record: UsageRecord, budget: int, window: BudgetWindow) -> BudgetStatus:
    """Where a budget stands, from its ledger's record of the window it is in."""
    return BudgetStatus(
        record.key_id,
        window,
        record.period,
        budget,
        record.used_tokens,
        record.reserved_tokens,
        window_reset_at(record.period),
    )


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
