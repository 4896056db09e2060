"""Teams in the gateway: a team's limits cap the sum of its keys', each refusal names the
team, and a refusal at either level leaves nothing held at either."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from llmserver.domain.budget import BudgetWindow, nanodollars_of, usd, window_period
from llmserver.domain.errors import (
    BudgetExceeded,
    Forbidden,
    ParallelLimited,
    QuotaExceeded,
    RateLimited,
    TokenRateLimited,
    TooLargeForTokenRate,
)
from llmserver.domain.gateway import Principal
from llmserver.domain.pricing import Prices
from llmserver.domain.quota import period_of
from llmserver.domain.teams import Team

from .world import NEEDS, USES, World, ask, origin, wait_until

PRICES = Prices(input=150_000, output=600_000)
WORST = nanodollars_of(5 * 150_000 + 8 * 600_000)
COST = nanodollars_of(5 * 150_000 + 5 * 600_000)


def now_ms(world: World) -> int:
    return int(world.clock.now().timestamp() * 1000)


async def members(world: World, team: Team, count: int = 2, **limits: object) -> list[Principal]:
    return [await world.principal(team_id=team.id, **limits) for _ in range(count)]


async def team_quota(world: World, team: Team) -> tuple[int, int, int]:
    record = await world.usage.get(team.ledger_id, period_of(world.clock.now()))
    return record.used_tokens, record.reserved_tokens, record.requests


async def held_by_keys(world: World, keys: list[Principal]) -> list[tuple[int, int, int]]:
    """Per key: its TPM window's tokens, its parallel slots, its quota's reserved tokens."""
    return [
        (
            world.token_rate.held(f"tpm:{p.key.id}", now_ms(world)),
            world.parallel.held(f"par:{p.key.id}"),
            (await world.usage_of(p)).reserved_tokens,
        )
        for p in keys
    ]


async def test_a_key_authenticates_with_its_team_and_a_key_without_one_with_none() -> None:
    world = World()
    team = await world.team(rpm_limit=5)
    [member] = await members(world, team, 1)
    loner = await world.principal()
    assert (member.team, loner.team) == (team, None)


async def test_a_key_whose_team_is_gone_is_refused() -> None:
    world = World()
    plaintext, _ = await world.issue(team_id="f" * 32)
    with pytest.raises(Forbidden, match="team no longer exists"):
        await world.gateway.authenticate(plaintext)


async def test_the_team_rpm_is_shared_by_its_keys_and_named_when_it_refuses() -> None:
    world = World()
    team = await world.team(rpm_limit=2)
    first, second = await members(world, team, rpm_limit=10)
    first_answer = await world.gateway.complete(first, ask(), origin("r1"))
    await world.gateway.complete(second, ask(), origin("r2"))

    with pytest.raises(RateLimited, match="2 requests per minute for team 'the team'"):
        await world.gateway.complete(first, ask(), origin("r3"))
    # The answer's headers show the tighter window: the team's.
    assert first_answer.rate is not None
    assert (first_answer.rate.limit, first_answer.rate.remaining) == (2, 1)
    world.clock.advance(60)
    await world.gateway.complete(second, ask(), origin("r4"))


async def test_a_request_its_key_refuses_takes_no_slot_of_the_team() -> None:
    world = World()
    team = await world.team(rpm_limit=2)
    first, second = await members(world, team)
    first = replace(first, key=replace(first.key, rpm_limit=1))
    await world.gateway.complete(first, ask(), origin("r1"))
    with pytest.raises(RateLimited, match="1 requests per minute\\."):
        await world.gateway.complete(first, ask(), origin("r2"))
    await world.gateway.complete(second, ask(), origin("r3"))


async def test_the_team_tpm_refuses_and_gives_back_the_keys_holds() -> None:
    world = World()
    team = await world.team(tpm_limit=NEEDS + USES - 1)
    first, second = await members(world, team, tpm_limit=100, max_parallel=3)
    answer = await world.gateway.complete(first, ask(use_cache=False), origin("r1"))
    assert answer.token_rate is not None
    assert (answer.token_rate.limit, answer.token_rate.remaining) == (NEEDS + USES - 1, USES - 1)

    with pytest.raises(TokenRateLimited, match="tokens per minute for team 'the team'"):
        await world.gateway.complete(second, ask(use_cache=False), origin("r2"))

    assert await held_by_keys(world, [first, second]) == [(USES, 0, 0), (0, 0, 0)]
    assert world.token_rate.held(f"tpm:team:{team.id}", now_ms(world)) == USES
    with pytest.raises(TooLargeForTokenRate, match="team 'the team'"):
        await world.gateway.complete(second, ask(max_tokens=NEEDS + USES), origin("r3"))
    assert world.parallel.held(f"par:{second.key.id}") == 0


async def test_the_team_parallel_limit_counts_every_key_in_flight() -> None:
    world = World()
    world.backend.gate = asyncio.Event()
    team = await world.team(max_parallel=1)
    first, second = await members(world, team, max_parallel=5, tpm_limit=100)
    running = asyncio.create_task(world.gateway.complete(first, ask(use_cache=False), origin("r1")))
    await wait_until(lambda: world.backend.generate_calls == 1)

    with pytest.raises(ParallelLimited, match="team 'the team' may have 1 at once"):
        await world.gateway.complete(second, ask(use_cache=False), origin("r2"))

    assert await held_by_keys(world, [second]) == [(0, 0, 0)]
    world.backend.gate.set()
    await running
    assert world.parallel.held(f"par:team:{team.id}") == 0
    await world.gateway.complete(second, ask(use_cache=False), origin("r3"))


async def test_the_team_quota_counts_every_key_and_refuses_past_it() -> None:
    world = World()
    team = await world.team(quota_tokens=NEEDS + USES - 1)
    first, second = await members(world, team, quota_tokens=1000, tpm_limit=100)
    await world.gateway.complete(first, ask(use_cache=False), origin("r1"))

    with pytest.raises(QuotaExceeded, match="quota of the API key's team 'the team'") as refused:
        await world.gateway.complete(second, ask(use_cache=False), origin("r2"))

    assert refused.value.remaining == NEEDS - 1
    assert await team_quota(world, team) == (USES, 0, 1)
    # The key's own reservation and TPM entry went back with the refusal.
    assert await held_by_keys(world, [second]) == [(0, 0, 0)]
    assert (await world.usage_of(second)).reserved_tokens == 0


async def test_the_team_budget_holds_the_worst_case_settles_the_cost_and_refuses() -> None:
    world = World(prices=PRICES)
    team = await world.team(budget_nanodollars=WORST + COST - 1, budget_window=BudgetWindow.DAY)
    first, second = await members(world, team, budget_nanodollars=10**9)
    await world.gateway.complete(first, ask(use_cache=False), origin("r1"))
    period = window_period(BudgetWindow.DAY, world.clock.now())
    spent = await world.budget.get(team.ledger_id, period)
    assert (spent.used_tokens, spent.reserved_tokens) == (COST, 0)

    with pytest.raises(BudgetExceeded, match="team 'the team''s \\$") as refused:
        await world.gateway.complete(second, ask(use_cache=False), origin("r2"))

    assert refused.value.code == "budget_exceeded"
    assert refused.value.remaining_usd == usd(WORST - 1)
    assert "resets at" in refused.value.message
    # All or nothing: the key's budget, its quota and the team's quota hold nothing.
    key_budget = await world.budget.get(
        second.key.id, window_period(BudgetWindow.MONTH, world.clock.now())
    )
    assert key_budget.reserved_tokens == 0
    assert (await world.usage_of(second)).reserved_tokens == 0
    assert await team_quota(world, team) == (USES, 0, 1)


async def test_a_key_budget_refusal_holds_nothing_of_the_team() -> None:
    world = World(prices=PRICES)
    team = await world.team(budget_nanodollars=10**9, quota_tokens=1000)
    [member] = await members(world, team, 1, budget_nanodollars=WORST - 1)
    with pytest.raises(BudgetExceeded, match="the key's \\$"):
        await world.gateway.complete(member, ask(use_cache=False), origin("r1"))
    assert await team_quota(world, team) == (0, 0, 0)
    assert await world.budget.list() == []  # no hold at either level


async def test_a_failed_or_cancelled_request_gives_back_the_teams_holds() -> None:
    world = World(prices=PRICES)
    team = await world.team(
        tpm_limit=100, max_parallel=2, quota_tokens=1000, budget_nanodollars=10**9
    )
    [member] = await members(world, team, 1)
    world.backend.error = RuntimeError("GPU on fire")
    with pytest.raises(RuntimeError):
        await world.gateway.complete(member, ask(use_cache=False), origin("r1"))
    world.backend.error = None
    world.backend.gate = asyncio.Event()
    task = asyncio.create_task(world.gateway.complete(member, ask(use_cache=False), origin("r2")))
    await wait_until(lambda: world.backend.generate_calls == 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    budget = await world.budget.get(
        team.ledger_id, window_period(BudgetWindow.MONTH, world.clock.now())
    )
    assert budget.reserved_tokens == 0
    assert (await team_quota(world, team))[1] == 0
    assert world.parallel.held(f"par:team:{team.id}") == 0
    # The cancelled request pays for its prompt, at both levels.
    assert world.token_rate.held(f"tpm:team:{team.id}", now_ms(world)) == 5
