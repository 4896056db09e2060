"""A key's monthly token quota on one model (``ModelLimit.quota_tokens``): reserved in a
ledger of its own before the work, settled or released exactly once with the key's own
quota, and all or nothing with every other hold."""

from __future__ import annotations

import asyncio

import pytest

from llmserver.domain.embeddings import EmbeddingRequest
from llmserver.domain.errors import BudgetExceeded, QuotaExceeded
from llmserver.domain.gateway import Principal
from llmserver.domain.key_limits import ModelLimit
from llmserver.domain.logs import Origin
from llmserver.domain.pricing import Prices
from llmserver.domain.quota import UsageRecord, model_ledger_id, period_of

from .test_budget import PRICES, _Pause, _PausedBudget
from .world import EMBED_MODEL, MODEL, NEEDS, USES, World, ask, origin, wait_until

PROMPT_TOKENS = 5


def origin_of(request_id: str, route: str) -> Origin:
    return Origin(request_id, route, origin(request_id).status_of)


async def model_usage(world: World, principal: Principal, model: str = MODEL) -> UsageRecord:
    period = period_of(world.clock.now())
    return await world.model_quota.get(model_ledger_id(principal.key.id, model), period)


async def test_a_model_quota_refuses_that_model_naming_it_and_not_another() -> None:
    world = World()
    principal = await world.principal(
        model_limits=(ModelLimit(MODEL, quota_tokens=NEEDS + USES - 1),)
    )

    await world.gateway.complete(principal, ask(use_cache=False), origin("r1"))
    with pytest.raises(QuotaExceeded, match=f"quota on model {MODEL} exceeded") as caught:
        await world.gateway.complete(principal, ask(use_cache=False), origin("r2"))
    await world.gateway.embed(
        principal, EmbeddingRequest(EMBED_MODEL, ("a b",)), origin_of("e1", "/v1/embeddings")
    )

    assert caught.value.model == MODEL
    assert (caught.value.remaining, caught.value.needed) == (NEEDS - 1, NEEDS)
    assert caught.value.reset_at.day == 1
    assert "The quota resets at" in str(caught.value)
    assert await model_usage(world, principal) == UsageRecord(
        model_ledger_id(principal.key.id, MODEL),
        period_of(world.clock.now()),
        used_tokens=USES,
        requests=1,
    )
    # The refused request left nothing held in the key's own ledger either.
    key_usage = await world.usage_of(principal)
    assert key_usage.reserved_tokens == 0
    assert key_usage.requests == 2
    assert (await model_usage(world, principal, EMBED_MODEL)).requests == 0


async def test_a_refusal_by_the_keys_quota_leaves_no_model_hold() -> None:
    world = World()
    principal = await world.principal(
        quota_tokens=NEEDS - 1, model_limits=(ModelLimit(MODEL, quota_tokens=1_000),)
    )

    with pytest.raises(QuotaExceeded, match="Monthly token quota exceeded") as caught:
        await world.gateway.complete(principal, ask(use_cache=False), origin("r1"))

    assert caught.value.model is None
    assert (await model_usage(world, principal)).reserved_tokens == 0
    assert world.backend.generate_calls == 0


async def test_a_refusal_by_the_budget_releases_the_model_quota_too() -> None:
    world = World(prices=Prices(input=10**6, output=10**6))
    principal = await world.principal(
        budget_nanodollars=1, model_limits=(ModelLimit(MODEL, quota_tokens=1_000),)
    )

    with pytest.raises(BudgetExceeded):
        await world.gateway.complete(principal, ask(use_cache=False), origin("r1"))

    assert (await model_usage(world, principal)).reserved_tokens == 0
    assert (await world.usage_of(principal)).reserved_tokens == 0


async def test_a_failed_request_releases_the_model_quota() -> None:
    world = World()
    principal = await world.principal(model_limits=(ModelLimit(MODEL, quota_tokens=1_000),))
    world.backend.error = RuntimeError("GPU on fire")

    with pytest.raises(RuntimeError):
        await world.gateway.complete(principal, ask(use_cache=False), origin("r1"))

    assert await model_usage(world, principal) == UsageRecord(
        model_ledger_id(principal.key.id, MODEL), period_of(world.clock.now())
    )


async def test_a_cancelled_request_settles_the_model_quota_to_its_prompt_once() -> None:
    world = World()
    world.backend.gate = asyncio.Event()
    principal = await world.principal(model_limits=(ModelLimit(MODEL, quota_tokens=1_000),))
    task = asyncio.create_task(
        world.gateway.complete(principal, ask(use_cache=False), origin("r1"))
    )
    await wait_until(lambda: world.backend.generate_calls == 1)
    assert (await model_usage(world, principal)).reserved_tokens == NEEDS

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    usage = await model_usage(world, principal)
    assert (usage.reserved_tokens, usage.used_tokens, usage.requests) == (0, PROMPT_TOKENS, 1)


async def test_concurrent_requests_never_pass_the_model_quota() -> None:
    world = World()
    principal = await world.principal(model_limits=(ModelLimit(MODEL, quota_tokens=5 * NEEDS),))
    world.backend.gate = asyncio.Event()
    tasks = [
        asyncio.create_task(
            world.gateway.complete(principal, ask(use_cache=False), origin(f"r{n}"))
        )
        for n in range(12)
    ]
    await wait_until(lambda: world.backend.generate_calls == 5)
    world.backend.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)

    assert sum(isinstance(r, QuotaExceeded) for r in results) == 7
    usage = await model_usage(world, principal)
    assert (usage.used_tokens, usage.reserved_tokens, usage.requests) == (5 * USES, 0, 5)
    assert (await world.usage_of(principal)).reserved_tokens == 0


async def test_a_model_limit_without_a_quota_counts_nothing_in_the_model_ledger() -> None:
    world = World()
    principal = await world.principal(model_limits=(ModelLimit(MODEL, rpm_limit=5),))

    await world.gateway.complete(principal, ask(use_cache=False), origin("r1"))

    assert await world.model_quota.list() == []


async def test_a_client_leaving_while_the_model_quota_settles_leaves_no_hold() -> None:
    """Cancelled once in the model quota's close, the budget's and the slot's still run."""
    pause = _Pause()
    world = World(prices=PRICES, model_quota=_PausedBudget(pause))
    principal = await world.principal(
        budget_nanodollars=10**9,
        max_parallel=1,
        model_limits=(ModelLimit(MODEL, quota_tokens=1_000),),
    )
    task = asyncio.create_task(world.gateway.complete(principal, ask(), origin("r1")))
    await wait_until(lambda: pause.waiting)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pause.go.set()
    await wait_until(lambda: world.parallel.held(f"par:{principal.key.id}") == 0)

    [budget] = await world.budget.list()
    assert budget.reserved_tokens == 0
    usage = await model_usage(world, principal)
    assert (usage.reserved_tokens, usage.requests) == (0, 1)
