"""Monthly token quotas: calendar months in UTC, reserve -> settle | release.

A request reserves an upper bound of what it may use (prompt tokens + max_tokens) before
any inference. The store admits the reservation only if used + reserved + asked fits the
quota, atomically, so concurrent requests can never spend past it. Afterwards the
reservation is settled to the real usage (never more than reserved) or released.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


def period_of(at: datetime) -> str:
    """The quota period (``YYYY-MM``, UTC) that an instant belongs to (a month's budget
    window too; ``budget.window_reset_at`` is when it ends)."""
    if at.tzinfo is None:
        # ``astimezone`` would read a naive value as the server's local time.
        raise ValueError("period_of needs a timezone-aware datetime")
    utc = at if at.tzinfo is UTC else at.astimezone(UTC)
    return f"{utc.year:04d}-{utc.month:02d}"


def model_ledger_id(key_id: str, model_id: str) -> str:
    """The id a key's quota on one model (``ModelLimit.quota_tokens``) is counted under in
    the per-model ledger: a key id is hex, so the first colon splits it back
    (``split_model_ledger_id``) whatever the model id holds."""
    return f"{key_id}:{model_id}"


def split_model_ledger_id(ledger_id: str) -> tuple[str, str]:
    """The key id and the model id of a ``model_ledger_id``."""
    key_id, _, model_id = ledger_id.partition(":")
    return key_id, model_id


# Not frozen: built on every request's path (see ``RequestLog``).
@dataclass(slots=True)
class UsageRecord:
    key_id: str
    period: str
    used_tokens: int = 0
    reserved_tokens: int = 0
    requests: int = 0
    cache_hits: int = 0

    def remaining(self, quota: int) -> int:
        return max(0, quota - self.used_tokens - self.reserved_tokens)


# Not frozen: built on every request's path (see ``RequestLog``).
@dataclass(slots=True)
class ReservationResult:
    """Outcome of an atomic reservation attempt, with the record as it now stands."""

    admitted: bool
    record: UsageRecord


# Not frozen: built on every request's path (see ``RequestLog``).
@dataclass(slots=True)
class Reservation:
    """A held reservation, handed back to settle or release it: the quota's tokens (in
    the key's ledger and, for a key with a quota on the model, in ``model_ledger`` too)
    and, for a key with a budget asking a priced model, the budget's nanodollars."""

    key_id: str
    period: str
    tokens: int
    model_ledger: str = ""
    """The per-model ledger id (``model_ledger_id``) holding ``tokens`` too; "": none."""
    budget_period: str = ""
    budget: int = 0
    """Nanodollars held in the budget ledger for ``budget_period``; 0: none."""
    team: str = ""
    """For a key in a team: the team's ledger id (``domain.teams``), whose quota holds
    ``tokens`` for ``period`` too; "": none held."""
    team_budget_period: str = ""
    team_budget: int = 0
    """Nanodollars held in the team's budget for ``team_budget_period``; 0: none."""


def fits(record: UsageRecord, tokens: int, quota: int | None) -> bool:
    """The single admission rule every UsageStore implements (in SQL, Lua or Python)."""
    if quota is None:
        return True
    return record.used_tokens + record.reserved_tokens + tokens <= quota


def settle_amount(reserved: int, actual: int) -> int:
    """What a settled request is charged: its real usage, capped at what it reserved."""
    return max(0, min(reserved, actual))
