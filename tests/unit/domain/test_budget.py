"""Budgets: windows, amounts, and the gateway's reserve -> settle | release in nanodollars."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmserver.adapters.memory.parallel import MemoryParallelStore
from llmserver.adapters.memory.usage import MemoryUsageStore
from llmserver.domain.budget import (
    BudgetWindow,
    budget_nanodollars,
    nanodollars_of,
    usd,
    window_period,
    window_reset_at,
    window_start,
)
from llmserver.domain.errors import BudgetExceeded, QuotaExceeded
from llmserver.domain.pricing import Prices

from .world import World, ask, origin, wait_until

PRICES = Prices(input=150_000, output=600_000)  # $0.15 and $0.60 per million tokens
# "what is six times seven" (5 tokens) with max_tokens 5: the worst case is the answer.
WORST = nanodollars_of(5 * 150_000 + 5 * 600_000)  # 3,750 nanodollars


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("window", "instant", "period", "reset"),
    [
        (BudgetWindow.DAY, "2026-12-01T23:59:59", "2026-12-01", "2026-12-02T00:00:00"),
        (BudgetWindow.MONTH, "2026-12-31T12:00:00", "2026-12", "2027-01-01T00:00:00"),
        # ISO weeks start on Monday; 2026-12-31 is a Thursday of ISO week 53 of 2026.
        (BudgetWindow.WEEK, "2026-12-31T12:00:00", "2026-W53", "2027-01-04T00:00:00"),
        (BudgetWindow.WEEK, "2026-11-30T00:00:00", "2026-W49", "2026-12-07T00:00:00"),
        # 2027-01-01 is a Friday: still the ISO week of 2026's last Monday.
        (BudgetWindow.WEEK, "2027-01-01T08:00:00", "2026-W53", "2027-01-04T00:00:00"),
    ],
)
def test_windows_are_calendar_aligned_in_utc(
    window: BudgetWindow, instant: str, period: str, reset: str
) -> None:
    assert window_period(window, at(instant)) == period
    assert window_reset_at(period) == at(reset)
    assert window_start(period) <= at(instant) < window_reset_at(period)


@given(st.integers(946_684_800, 4_102_444_800))  # 2000 to 2100, in Unix seconds
def test_every_instant_lies_in_its_window(seconds: int) -> None:
    instant = datetime.fromtimestamp(seconds, UTC)
    for window in BudgetWindow:
        period = window_period(window, instant)
        assert window_start(period) <= instant < window_reset_at(period)


@pytest.mark.parametrize(
    ("given_value", "nano"),
    [("0.01", 10_000_000), (5, 5 * 10**9), (0.1, 10**8), ("1000000", 10**15), ("0", 0)],
)
def test_budget_amounts_are_exact(given_value: object, nano: int) -> None:
    assert budget_nanodollars(given_value) == nano


@pytest.mark.parametrize(
    "bad", ["-1", "nan", "inf", "0.0000000001", "1000000.01", "ten", True, None, [1]]
)
def test_bad_budget_amounts_say_what_is_wrong(bad: object) -> None:
    with pytest.raises(ValueError, match="must"):
        budget_nanodollars(bad)


def test_a_cost_counts_against_a_budget_rounded_up_to_the_nanodollar() -> None:
    assert [nanodollars_of(p) for p in (0, 1, 999, 1000, 1001)] == [0, 1, 1, 1, 2]
    assert usd(3_750) == "0.00000375"


async def test_a_request_holds_its_worst_case_then_settles_to_its_cost() -> None:
    world = World(prices=PRICES)
    principal = await world.principal(budget_nanodollars=10_000)
    period = window_period(BudgetWindow.MONTH, world.clock.now())
    await world.gateway.complete(principal, ask(max_tokens=8), origin("r1"))

    record = await world.budget.get(principal.key.id, period)
    # Served: 5 prompt + 5 completion tokens, though 8 could have been generated.
    assert (record.used_tokens, record.reserved_tokens, record.requests) == (WORST, 0, 1)
    assert world.logs[0].cost_picodollars == 5 * 150_000 + 5 * 600_000


async def test_an_exhausted_budget_refuses_with_the_remaining_amount_and_reset() -> None:
    world = World(prices=PRICES)
    principal = await world.principal(budget_nanodollars=WORST * 2 - 1, quota_tokens=1000)
    await world.gateway.complete(principal, ask(), origin("r1"))
    with pytest.raises(BudgetExceeded) as refused:
        await world.gateway.complete(principal, ask(), origin("r2"))

    assert refused.value.code == "budget_exceeded"
    assert refused.value.remaining_usd == usd(WORST - 1)
    assert refused.value.reset_at == window_reset_at(
        window_period(BudgetWindow.MONTH, world.clock.now())
    )
    assert "resets at" in refused.value.message
    # All or nothing: the refused request left no tokens of the quota held.
    quota = await world.usage_of(principal)
    assert (quota.used_tokens, quota.reserved_tokens) == (10, 0)
    assert [row.error_code for row in world.logs] == [None, "budget_exceeded"]
    assert world.telemetry.of("refused") == [("budget",)]


async def test_a_quota_refusal_holds_no_budget() -> None:
    world = World(prices=PRICES)
    principal = await world.principal(budget_nanodollars=10**9, quota_tokens=3)
    with pytest.raises(QuotaExceeded):
        await world.gateway.complete(principal, ask(), origin("r1"))
    assert await world.budget.list() == []


async def test_free_models_and_keys_without_a_budget_never_touch_the_budget_store() -> None:
    free = World()
    await free.gateway.complete(await free.principal(budget_nanodollars=0), ask(), origin("a"))
    priced = World(prices=PRICES)
    await priced.gateway.complete(await priced.principal(), ask(), origin("b"))
    assert await free.budget.list() == await priced.budget.list() == []


async def test_a_failed_request_releases_its_hold() -> None:
    world = World(prices=PRICES)
    world.backend.error = RuntimeError("GPU on fire")
    principal = await world.principal(budget_nanodollars=10**9)
    with pytest.raises(RuntimeError):
        await world.gateway.complete(principal, ask(), origin("r1"))
    [record] = await world.budget.list()
    assert (record.used_tokens, record.reserved_tokens) == (0, 0)


@settings(max_examples=40, deadline=None)
@given(
    budget=st.integers(min_value=0, max_value=WORST * 6),
    plan=st.lists(
        st.tuples(st.sampled_from(["serve", "fail", "cancel"]), st.integers(1, 12)),
        min_size=1,
        max_size=12,
    ),
)
def test_concurrent_requests_never_spend_past_the_budget(
    budget: int, plan: list[tuple[str, int]]
) -> None:
    """Any mix of requests run at once (served, failing, cancelled mid-flight, each with
    its own max_tokens): spend never passes the budget and no hold outlives its request."""

    async def scenario() -> None:
        world = World(prices=PRICES, hot=False)
        world.backend.gate = asyncio.Event()
        world.backend.fails = lambda prompt: "fail" in str(prompt)
        world.backend.error = RuntimeError("broken")
        principal = await world.principal(budget_nanodollars=budget)
        tasks = [
            asyncio.ensure_future(
                world.gateway.complete(
                    principal, ask(f"{kind} {i} a b", max_tokens=tokens), origin(f"r{i}")
                )
            )
            for i, (kind, tokens) in enumerate(plan)
        ]
        for _ in range(5):
            await asyncio.sleep(0)
        records = await world.budget.list()
        held = sum(r.reserved_tokens for r in records)
        assert held <= budget
        for task, (kind, _) in zip(tasks, plan, strict=True):
            if kind == "cancel":
                task.cancel()
        world.backend.gate.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for record in await world.budget.list():
            assert record.reserved_tokens == 0
            assert record.used_tokens <= budget
        spent = sum(nanodollars_of(row.cost_picodollars) for row in world.logs)
        assert spent == sum(r.used_tokens for r in await world.budget.list())

    asyncio.run(scenario())


class _Pause:
    """Where a store's close waits, so the request can be cancelled while it closes."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.waiting = False

    async def __call__(self) -> None:
        self.waiting = True
        await self.go.wait()


class _PausedParallel(MemoryParallelStore):
    """Its release is applied, then waits (as ``_PausedBudget``'s settle)."""

    def __init__(self, pause: _Pause) -> None:
        super().__init__()
        self._pause = pause

    async def release(self, bucket: str) -> None:
        await super().release(bucket)
        await self._pause()


class _PausedBudget(MemoryUsageStore):
    """Its settle is applied, then waits: as a Redis store's command, queued when it is
    called, runs while its caller waits for the reply (and after the caller is gone)."""

    def __init__(self, pause: _Pause) -> None:
        super().__init__()
        self._pause = pause

    async def settle(
        self, key_id: str, period: str, reserved: int, used: int, *, cache_hit: bool = False
    ) -> None:
        await super().settle(key_id, period, reserved, used, cache_hit=cache_hit)
        await self._pause()


@pytest.mark.parametrize("paused", ["parallel slot", "budget"])
async def test_a_client_leaving_while_its_request_settles_leaves_no_hold(paused: str) -> None:
    """Cancelled once (as a client's leaving does) in either close, the others still run."""
    pause = _Pause()
    if paused == "budget":
        world = World(prices=PRICES, budget=_PausedBudget(pause))
    else:
        world = World(prices=PRICES, parallel=_PausedParallel(pause))
    principal = await world.principal(budget_nanodollars=10**9, max_parallel=1)
    task = asyncio.create_task(world.gateway.complete(principal, ask(), origin("r1")))
    await wait_until(lambda: pause.waiting)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pause.go.set()
    await wait_until(lambda: world.parallel.held(f"par:{principal.key.id}") == 0)

    [record] = await world.budget.list()
    assert (record.used_tokens, record.reserved_tokens) == (WORST, 0)
