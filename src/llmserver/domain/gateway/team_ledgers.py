"""A team's share of its keys' requests in the quota and budget ledgers.

A request of a key in a team reserves its tokens in the team's monthly quota and, for a
team with a budget, its worst-case cost in the team's budget, under the team's ledger id
(``domain.teams``), right after the key's own reservations; it settles to what the key is
charged, or releases, with them. Each hold is recorded on the ``Reservation`` once taken,
so a refusal or a failure gives back exactly what was held."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime

from llmserver.domain.gateway.closing import close_all
from llmserver.domain.gateway.ledger_holds import hold_spend, hold_tokens
from llmserver.domain.gateway.values import Ledgers
from llmserver.domain.quota import Reservation, settle_amount
from llmserver.domain.teams import Team


class TeamLedgers:
    def __init__(self, ledgers: Ledgers) -> None:
        self._usage = ledgers.quota
        self._budget = ledgers.budget

    async def reserve(
        self, team: Team, reservation: Reservation, needed: int, at: datetime
    ) -> None:
        """``reservation.tokens`` of the team's quota, then ``needed`` nanodollars of its
        budget (none when ``needed`` is 0 or the team has no budget); refusals name the
        team."""
        ledger, period, tokens = team.ledger_id, reservation.period, reservation.tokens
        await hold_tokens(self._usage, ledger, period, tokens, team.quota_tokens, team=team.name)
        reservation.team = ledger
        budget = team.budget_nanodollars
        if not needed or budget is None:
            return
        reservation.team_budget_period = await hold_spend(
            self._budget, ledger, budget, team.budget_window, needed, at, team=team.name
        )
        reservation.team_budget = needed

    def settling(
        self, reservation: Reservation, tokens: int, cost: int, hit: bool
    ) -> tuple[Awaitable[None], Awaitable[None] | None]:
        """The two closes (the second ``None`` without a budget) that charge the team what
        its key was charged: ``tokens`` of its quota and ``cost`` nanodollars of its
        budget, each capped at what the team held. For the caller's ``close_all``, beside
        the key's own: a coroutine and a ``close_all`` of the team's own were two frames
        more on every request of a key in a team."""
        return (
            self._usage.settle(
                reservation.team, reservation.period, reservation.tokens, tokens, cache_hit=hit
            ),
            self._budget.settle(
                reservation.team,
                reservation.team_budget_period,
                reservation.team_budget,
                settle_amount(reservation.team_budget, cost),
                cache_hit=hit,
            )
            if reservation.team_budget
            else None,
        )

    async def release(self, reservation: Reservation) -> None:
        """Give back what ``reservation`` holds of the team's (nothing if none)."""
        await close_all(
            self._usage.release(reservation.team, reservation.period, reservation.tokens)
            if reservation.team
            else None,
            self._budget.release(
                reservation.team, reservation.team_budget_period, reservation.team_budget
            )
            if reservation.team_budget
            else None,
        )
