"""Teams: a group of keys whose limits cap the sum over its keys.

A team has the key's limits (RPM, TPM, monthly token quota, ``max_parallel``, a spend
budget per window), counted over every request of every key in it. A request of a key in
a team is admitted only if the key's limits *and* the team's admit it, reserved all or
nothing (``gateway.admission``, ``gateway.holds``).

The team's counters live in the key's stores under names no key can take: its rate buckets
are ``rpm:team:<id>``, ``tpm:team:<id>`` and ``par:team:<id>`` (a key's are its 64-hex id
after the colon, and "team" is not hex), its quota and budget ledgers are kept under the
ledger id ``team:<id>`` (``ledger_id``; a key id never holds a colon), 37 characters, within
the ledgers' 64-character key column.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from llmserver.domain.budget import BudgetWindow
from llmserver.domain.key_limits import check_record_limits

TEAM_ID_CHARS = 32
"""A team id is a UUID's 32 hex digits."""
TEAM_NAME_MAX_CHARS = 64
"""Names are admin-chosen labels (the CLI's ``--team``, the metrics' ``team`` label)."""
TEAM_LEDGER_PREFIX = "team:"

EDITABLE_TEAM_FIELDS = (
    "name",
    "quota_tokens",
    "rpm_limit",
    "tpm_limit",
    "max_parallel",
    "budget_nanodollars",
    "budget_window",
)
"""The settings an admin may change on an existing team (all but its id and creation)."""


def team_ledger_id(team_id: str) -> str:
    """The id a team's quota and budget are counted under in the key ledgers."""
    return TEAM_LEDGER_PREFIX + team_id


@dataclass(frozen=True, slots=True)
class Team:
    id: str
    name: str
    created_at: datetime
    quota_tokens: int | None = None
    """Tokens per calendar month (UTC) over all the team's keys."""
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    max_parallel: int | None = None
    budget_nanodollars: int | None = None
    budget_window: BudgetWindow = BudgetWindow.MONTH

    def __post_init__(self) -> None:
        check_record_limits(self)

    @property
    def ledger_id(self) -> str:
        return team_ledger_id(self.id)
