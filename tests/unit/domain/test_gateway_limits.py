"""TPM and max_parallel through the use case: reserved at admission, settled to the tokens
used, released on failure or cancellation, all or nothing with the quota reservation."""

from __future__ import annotations

import asyncio

import pytest

from llmserver.domain.errors import (
    ParallelLimited,
    QuotaExceeded,
    RateLimited,
    TokenRateLimited,
    TooLargeForTokenRate,
)
from llmserver.domain.gateway import Principal
from llmserver.domain.logs import CacheStatus

from .world import NEEDS, USES, World, ask, origin, wait_until


def now_ms(world: World) -> int:
    return int(world.clock.now().timestamp() * 1000)


def tpm_held(world: World, principal: Principal) -> int:
    return world.token_rate.held(f"tpm:{principal.key.id}", now_ms(world))


def in_flight(world: World, principal: Principal) -> int:
    return world.parallel.held(f"par:{principal.key.id}")


async def test_tpm_reserves_prompt_plus_max_tokens_and_settles_to_what_was_used() -> None:
    world = World()
    principal = await world.principal(tpm_limit=30)

    first = await world.gateway.complete(principal, ask(use_cache=False), origin("r1"))
    second = await world.gateway.complete(principal, ask(use_cache=False), origin("r2"))

    assert first.token_rate is not None
    assert (first.token_rate.limit, first.token_rate.remaining) == (30, 30 - NEEDS)
    assert second.token_rate is not None
    # The first request's entry shrank to the 10 tokens it used.
    assert second.token_rate.remaining == 30 - USES - NEEDS
    assert tpm_held(world, principal) == 2 * USES


async def test_a_tpm_refusal_says_what_is_free_and_when_it_fits() -> None:
    world = World()
    principal = await world.principal(tpm_limit=30)
    await world.gateway.complete(principal, ask(use_cache=False), origin("r1"))
    world.clock.advance(10)
    await world.gateway.complete(principal, ask(use_cache=False), origin("r2"))

    with pytest.raises(TokenRateLimited) as caught:
        await world.gateway.complete(principal, ask(use_cache=False), origin("r3"))

    error = caught.value
    assert isinstance(error, RateLimited)
    assert error.retry_after == 50.0  # when r1's 10 tokens leave the window
    assert error.token_rate is not None
    assert error.token_rate.remaining == 10
    assert "30 tokens per minute" in error.message
    assert world.backend.generate_calls == 2
    assert world.telemetry.of("refused") == [("tpm",)]
    assert (world.logs[-1].status, world.logs[-1].error_code) == (429, "rate_limit_exceeded")
    # What is free still admits a request that fits it exactly.
    fits = ask(use_cache=False, max_tokens=5)
    assert (await world.gateway.complete(principal, fits, origin("r4"))).token_rate is not None
    world.clock.advance(50)  # r1 has left: r2 and r4 hold 20
    await world.gateway.complete(principal, fits, origin("r5"))


async def test_a_request_larger_than_the_whole_tpm_limit_is_a_400_that_holds_nothing() -> None:
    world = World()
    principal = await world.principal(tpm_limit=12, max_parallel=1)

    with pytest.raises(TooLargeForTokenRate) as caught:
        await world.gateway.complete(principal, ask(use_cache=False), origin("r1"))

    assert caught.value.param == "max_tokens"
    assert world.logs[-1].status == 400
    assert (tpm_held(world, principal), in_flight(world, principal)) == (0, 0)
    await world.gateway.complete(principal, ask(use_cache=False, max_tokens=7), origin("r2"))


async def test_max_parallel_refuses_the_request_past_it_until_one_ends() -> None:
    world = World()
    world.backend.gate = asyncio.Event()
    principal = await world.principal(max_parallel=2)
    tasks = [
        asyncio.create_task(
            world.gateway.complete(principal, ask(use_cache=False), origin(f"r{i}"))
        )
        for i in range(2)
    ]
    await wait_until(lambda: world.backend.generate_calls == 2)

    with pytest.raises(ParallelLimited) as caught:
        await world.gateway.complete(principal, ask(use_cache=False), origin("r3"))

    assert caught.value.retry_after == 1.0
    assert (world.logs[-1].status, world.logs[-1].error_code) == (
        429,
        "too_many_parallel_requests",
    )
    assert world.telemetry.of("refused") == [("parallel",)]
    world.backend.gate.set()
    await asyncio.gather(*tasks)
    assert in_flight(world, principal) == 0
    await world.gateway.complete(principal, ask(use_cache=False), origin("r4"))


async def test_a_tpm_refusal_gives_the_parallel_slot_back() -> None:
    world = World()
    principal = await world.principal(tpm_limit=NEEDS, max_parallel=1)
    await world.gateway.complete(principal, ask(use_cache=False), origin("r1"))

    with pytest.raises(TokenRateLimited):
        await world.gateway.complete(principal, ask(use_cache=False), origin("r2"))

    assert in_flight(world, principal) == 0
    assert tpm_held(world, principal) == USES


async def test_a_quota_refusal_gives_the_tpm_entry_and_the_slot_back() -> None:
    world = World()
    principal = await world.principal(quota_tokens=NEEDS - 1, tpm_limit=100, max_parallel=1)

    with pytest.raises(QuotaExceeded):
        await world.gateway.complete(principal, ask(use_cache=False), origin("r1"))

    assert (tpm_held(world, principal), in_flight(world, principal)) == (0, 0)


async def test_a_cancelled_request_frees_its_slot_and_keeps_its_prompt_in_the_window() -> None:
    world = World()
    world.backend.gate = asyncio.Event()
    principal = await world.principal(tpm_limit=100, max_parallel=1)
    task = asyncio.create_task(
        world.gateway.complete(principal, ask(use_cache=False), origin("r1"))
    )
    await wait_until(lambda: world.backend.generate_calls == 1)
    assert (tpm_held(world, principal), in_flight(world, principal)) == (NEEDS, 1)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert (tpm_held(world, principal), in_flight(world, principal)) == (5, 0)


async def test_a_backend_failure_releases_every_hold() -> None:
    world = World()
    world.backend.error = RuntimeError("GPU on fire")
    principal = await world.principal(tpm_limit=100, max_parallel=1)

    with pytest.raises(RuntimeError):
        await world.gateway.complete(principal, ask(use_cache=False), origin("r1"))

    assert (tpm_held(world, principal), in_flight(world, principal)) == (0, 0)


async def test_a_stream_holds_its_slot_until_it_ends_or_is_closed() -> None:
    world = World()
    principal = await world.principal(tpm_limit=100, max_parallel=1)
    session = await world.gateway.open_stream(principal, ask(use_cache=False), origin("r1"))
    assert session.token_rate is not None
    with pytest.raises(ParallelLimited):
        await world.gateway.open_stream(principal, ask(use_cache=False), origin("r2"))

    events = [event async for event in session.events]

    assert len(events) == 6  # five words and the end
    assert (tpm_held(world, principal), in_flight(world, principal)) == (USES, 0)
    cut = await world.gateway.open_stream(principal, ask(use_cache=False), origin("r3"))
    await cut.events.aclose()  # type: ignore[attr-defined]  # the client left
    assert (tpm_held(world, principal), in_flight(world, principal)) == (USES + 6, 0)


async def test_a_cache_hit_holds_a_slot_but_leaves_no_tokens_in_the_window() -> None:
    world = World()
    principal = await world.principal(tpm_limit=100, max_parallel=1)
    await world.gateway.complete(principal, ask(), origin("r1"))

    hit = await world.gateway.complete(principal, ask(), origin("r2"))

    assert hit.cache_status is CacheStatus.HIT
    assert (tpm_held(world, principal), in_flight(world, principal)) == (USES, 0)


async def test_keys_without_these_limits_take_no_holds() -> None:
    world = World()
    principal = await world.principal()

    outcome = await world.gateway.complete(principal, ask(use_cache=False), origin("r1"))

    assert outcome.token_rate is None
    assert world.token_rate.held(f"tpm:{principal.key.id}", now_ms(world)) == 0
