"""The holds' properties (``test_limits_properties``) with both keys in one team: over any
interleaving of admissions, progress, settles, cuts and time, no counter of the team's
exceeds its limit either, a request refused at either level holds nothing at either, and
no reservation of the team's survives its request."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings

from llmserver.domain.budget import BudgetWindow, nanodollars_of, window_period
from llmserver.domain.gateway import Principal
from llmserver.domain.pricing import Prices
from llmserver.domain.quota import period_of
from llmserver.domain.ratelimit import WINDOW_MS
from llmserver.domain.teams import Team

from .test_limits_properties import LIMITS, PROMPT, Model, ops
from .world import World

PRICES = Prices(input=150_000, output=600_000)
TEAM = {"tpm_limit": 50, "max_parallel": 2, "quota_tokens": 120, "budget_nanodollars": 90_000}


def worst(reserved: int) -> int:
    """The budget a request reserving ``reserved`` tokens holds (its prompt is PROMPT)."""
    return nanodollars_of(PROMPT * PRICES.input + (reserved - PROMPT) * PRICES.output)


class TeamModel(Model):
    def __init__(self, world: World, keys: list[Principal], team: Team) -> None:
        super().__init__(world, keys)
        self.team = team

    async def team_observed(self) -> tuple[int, int, int, int, int, int]:
        """The team's TPM tokens, slots, quota used and reserved, budget used and reserved."""
        world, team, now = self.world, self.team, self.world.clock.now()
        quota = await world.usage.get(team.ledger_id, period_of(now))
        budget = await world.budget.get(team.ledger_id, window_period(BudgetWindow.MONTH, now))
        return (
            world.token_rate.held(f"tpm:team:{team.id}", self.now_ms()),
            world.parallel.held(f"par:team:{team.id}"),
            quota.used_tokens,
            quota.reserved_tokens,
            budget.used_tokens,
            budget.reserved_tokens,
        )

    async def check(self) -> None:
        await super().check()
        held, slots, used, reserved, spent, budget_held = await self.team_observed()
        now = self.now_ms()
        every = [entry for entries in self.entries for entry in entries]
        assert held == sum(t for at, t in every if at > now - WINDOW_MS) <= TEAM["tpm_limit"]
        assert slots == len(self.live) <= TEAM["max_parallel"]
        assert reserved == sum(r.reserved for r in self.live)
        assert used + reserved <= TEAM["quota_tokens"]
        assert budget_held == sum(worst(r.reserved) for r in self.live)
        assert spent + budget_held <= TEAM["budget_nanodollars"]

    async def open(self, key: int, max_tokens: int) -> None:
        before, live = await self.team_observed(), len(self.live)
        await super().open(key, max_tokens)  # checks the keys' counters on a refusal
        if len(self.live) == live:
            assert await self.team_observed() == before


async def scenario(steps: list[tuple[Any, ...]]) -> None:
    world = World(prices=PRICES)
    team = await world.team(**TEAM)
    keys = [await world.principal(team_id=team.id, **limits) for limits in LIMITS]
    model = TeamModel(world, keys, team)
    for op, *args in steps:
        if op == "tick":
            world.clock.advance(args[0])
        else:
            await getattr(model, op)(*args)
        await model.check()
    while model.live:
        await model.close(0)
        await model.check()
    _, slots, _, reserved, _, budget_held = await model.team_observed()
    assert (slots, reserved, budget_held) == (0, 0, 0)


@settings(max_examples=300, deadline=None)
@given(steps=ops)
def test_no_team_counter_exceeds_its_limit_and_no_team_hold_survives_its_request(
    steps: list[tuple[Any, ...]],
) -> None:
    asyncio.run(scenario(steps))
