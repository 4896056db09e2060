"""Team administration: the use cases behind ``llmserver teams`` and the admin API's
``/admin/teams`` (pure domain code on the ``TeamStore`` and ledger ports).

Teams are created and edited, never deleted: a key names its team (a foreign key that
refuses the deletion), request logs and usage rows name it after its keys are gone, and a
team without keys costs nothing. A team's name is unique; admins and the CLI find a team
by id or by name.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from llmserver.domain.budget import BudgetWindow, window_period
from llmserver.domain.budget_status import BudgetStatus, budget_status, status_of
from llmserver.domain.edits import KEEP, Keep, shared_changes
from llmserver.domain.errors import InvalidRequest, NotFound
from llmserver.domain.key_limits import check_limits
from llmserver.domain.period_records import PeriodRecords
from llmserver.domain.ports import Clock, TeamStore, UsageStore
from llmserver.domain.quota import UsageRecord, period_of
from llmserver.domain.teams import TEAM_NAME_MAX_CHARS, Team


def clean_team_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise InvalidRequest("A team needs a name.", param="name")
    if "\x00" in name:  # PostgreSQL text cannot hold it: the insert would fail (a 500)
        raise InvalidRequest("A team name cannot contain a NUL character.", param="name")
    if len(name) > TEAM_NAME_MAX_CHARS:
        raise InvalidRequest(
            f"A team name has at most {TEAM_NAME_MAX_CHARS} characters.", param="name"
        )
    return name


async def find_team(teams: TeamStore, id_or_name: str) -> Team:
    """A team by id, else by name; ``NotFound`` naming what was asked."""
    team = await teams.get(id_or_name) or await teams.find_by_name(id_or_name.strip())
    if team is None:
        raise NotFound(f"No team with id or name '{id_or_name[:100]}'.", param="team")
    return team


@dataclass(frozen=True, slots=True)
class TeamEdit:
    """What an edit changes; every field left at ``KEEP`` stays (``None``: no limit)."""

    name: str | Keep = KEEP
    quota_tokens: int | Keep | None = KEEP
    rpm_limit: int | Keep | None = KEEP
    tpm_limit: int | Keep | None = KEEP
    max_parallel: int | Keep | None = KEEP
    budget_nanodollars: int | Keep | None = KEEP
    budget_window: BudgetWindow | Keep = KEEP


@dataclass(frozen=True, slots=True)
class TeamUsage:
    """Where a team stands: its quota's month and, with a budget, its budget's window."""

    quota: UsageRecord
    budget: BudgetStatus | None


class TeamAdmin:
    def __init__(
        self, teams: TeamStore, clock: Clock, *, usage: UsageStore, budget: UsageStore
    ) -> None:
        """``usage``: the quota's ledger; ``budget``: the budgets' (a team's counts are
        kept there under its ledger id)."""
        self._teams = teams
        self._clock = clock
        self._usage = usage
        self._budget = budget

    async def create(
        self,
        *,
        name: str,
        quota_tokens: int | None = None,
        rpm_limit: int | None = None,
        tpm_limit: int | None = None,
        max_parallel: int | None = None,
        budget_nanodollars: int | None = None,
        budget_window: BudgetWindow = BudgetWindow.MONTH,
    ) -> Team:
        limits = {
            "quota_tokens": quota_tokens,
            "rpm_limit": rpm_limit,
            "tpm_limit": tpm_limit,
            "max_parallel": max_parallel,
        }
        check_limits(limits)
        team = Team(
            id=uuid.uuid4().hex,
            name=clean_team_name(name),
            created_at=self._clock.now(),
            budget_nanodollars=budget_nanodollars,
            budget_window=budget_window,
            **limits,
        )
        try:
            await self._teams.add(team)
        except ValueError:  # a fresh UUID does not collide: the name is taken
            raise self._name_taken(team.name) from None
        return team

    @staticmethod
    def _name_taken(name: str) -> InvalidRequest:
        return InvalidRequest(f"A team named '{name}' exists already.", param="name")

    async def list(self) -> Sequence[Team]:
        return await self._teams.list()

    async def find(self, id_or_name: str) -> Team:
        return await find_team(self._teams, id_or_name)

    async def update(self, id_or_name: str, edit: TeamEdit) -> tuple[Team, Team]:
        """Change a team's name, limits or budget; returns it before and after."""
        changes = shared_changes(edit, clean_team_name)
        before = await self.find(id_or_name)
        wanted = replace(before, **changes)
        try:
            after = await self._teams.update(wanted)
        except ValueError:
            raise self._name_taken(wanted.name) from None
        if after is None:
            raise NotFound(f"No team with id or name '{id_or_name[:100]}'.", param="team")
        return before, after

    async def usage(self, id_or_name: str) -> tuple[Team, TeamUsage]:
        """A team and its counts in the current month and budget window."""
        team = await self.find(id_or_name)
        now = self._clock.now()
        quota = await self._usage.get(team.ledger_id, period_of(now))
        budget = team.budget_nanodollars
        status = (
            None
            if budget is None
            else await budget_status(self._budget, team.ledger_id, budget, team.budget_window, now)
        )
        return team, TeamUsage(quota, status)

    async def usages(self) -> Sequence[tuple[Team, TeamUsage]]:
        """Every team, by name, with what ``usage`` says of it, read in a bounded number of
        ledger listings (the quota's month, and each budget window some team uses: at most
        four), not a read per team."""
        teams = await self.list()
        now = self._clock.now()
        month = await PeriodRecords.of(self._usage, period_of(now), _ledger_ids(teams))
        windows = await self._budget_windows(teams, now)
        usages = []
        for team in teams:
            budget = team.budget_nanodollars
            window = team.budget_window
            status = (
                None
                if budget is None
                else status_of(windows[window].record(team.ledger_id), budget, window)
            )
            usages.append((team, TeamUsage(month.record(team.ledger_id), status)))
        return usages

    async def _budget_windows(
        self, teams: Sequence[Team], now: datetime
    ) -> dict[BudgetWindow, PeriodRecords]:
        """The current period's spend of each budget window that a budgeted team uses."""
        budgeted = [team for team in teams if team.budget_nanodollars is not None]
        return {
            window: await PeriodRecords.of(
                self._budget, window_period(window, now), _ledger_ids(budgeted)
            )
            for window in {team.budget_window for team in budgeted}
        }


def _ledger_ids(teams: Sequence[Team]) -> set[str]:
    return {team.ledger_id for team in teams}
