"""Spend budgets per key: a limit in dollars per calendar window (UTC), held exactly.

A budget is counted in nanodollars (10^-9 dollars), integers: a request's cost is exact in
picodollars (``pricing``) and is counted against a budget rounded *up* to the next
nanodollar, so the budget's count is never below what was spent (it is the exact cost for
any price with at most 3 decimal places per million tokens, every real price). Nanodollars,
not picodollars: the replicas' ledger compares amounts in Redis's Lua, whose numbers are
doubles, exact to 2^53; ``MAX_BUDGET_USD`` in nanodollars plus the dearest request's worst
case stays below that, so every comparison is exact.

Windows are calendar-aligned in UTC: a day (``2026-12-01``), an ISO week starting Monday
(``2026-W49``; the ISO year, so 2026-12-31 may belong to ``2027-W01``), or a month
(``2026-12``). A window's spend starts at 0 when it begins; the period string names it in
the ledger, and the three shapes never collide, so changing a key's window starts a fresh
count.

A request reserves its worst case (prompt tokens at the input price plus ``max_tokens`` at
the output price) before any inference, through the same ledger port as the token quota
(``UsageStore``, whose "tokens" are nanodollars here), and settles to its actual cost or
releases on failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from llmserver.domain.pricing import dollars
from llmserver.domain.quota import period_of

NANODOLLARS_PER_DOLLAR = 10**9
PICODOLLARS_PER_NANODOLLAR = 1000
MAX_BUDGET_USD = 1_000_000
"""The largest budget a key may have (10^15 nanodollars; see the module docstring)."""
BUDGET_DECIMALS = 9


class BudgetWindow(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class KeyBudget:
    """A new key's budget setting: the limit (``None``: no budget) and its window."""

    nanodollars: int | None = None
    window: BudgetWindow = BudgetWindow.MONTH


def budget_nanodollars(value: object) -> int:
    """A budget in dollars (an integer, a float as its shortest decimal form, or a decimal
    string) as nanodollars. ValueError saying what is wrong."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("must be a number or a decimal string of dollars")
    try:
        amount = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation:
        raise ValueError(f"must be a decimal number of dollars, not {value!r}") from None
    if not amount.is_finite() or not 0 <= amount <= MAX_BUDGET_USD:
        raise ValueError(f"must be from 0 to {MAX_BUDGET_USD} dollars, not {value!r}")
    scaled = amount * NANODOLLARS_PER_DOLLAR
    if scaled != scaled.to_integral_value():
        raise ValueError(f"must have at most {BUDGET_DECIMALS} decimal places, not {value!r}")
    return int(scaled)


def nanodollars_of(picodollars: int) -> int:
    """A cost counted against a budget: rounded up, so a budget never undercounts."""
    return -(-picodollars // PICODOLLARS_PER_NANODOLLAR)


def usd(nanodollars: int) -> str:
    """Nanodollars as an exact decimal string of dollars (``"0.01"``, ``"0.000000135"``)."""
    return dollars(nanodollars * PICODOLLARS_PER_NANODOLLAR)


def window_period(window: BudgetWindow, at: datetime) -> str:
    """The period (a day, ISO week or month, UTC) that ``at`` belongs to."""
    if at.tzinfo is None:
        raise ValueError("window_period needs a timezone-aware datetime")
    if window is BudgetWindow.MONTH:
        return period_of(at)  # the quota's period
    utc = at.astimezone(UTC)
    if window is BudgetWindow.DAY:
        return utc.date().isoformat()
    year, week, _ = utc.isocalendar()
    return f"{year:04d}-W{week:02d}"


def window_start(period: str) -> datetime:
    """The first instant of a period in any of the three shapes (a quota's is a month)."""
    if "-W" in period:
        year, week = period.split("-W")
        day = date.fromisocalendar(int(year), int(week), 1)
    elif period.count("-") == 2:
        day = date.fromisoformat(period)
    else:
        year, month = period.split("-")
        day = date(int(year), int(month), 1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def window_reset_at(period: str) -> datetime:
    """The first instant of the period after ``period``."""
    start = window_start(period)
    if "-W" in period:
        return start + timedelta(days=7)
    if period.count("-") == 2:
        return start + timedelta(days=1)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)
