"""The non-streaming use case: the response cache and single-flight."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from llmserver.adapters.memory import MemoryCompletionCache
from llmserver.domain.cache_keys import CachePolicy
from llmserver.domain.errors import (
    QuotaExceeded,
)
from llmserver.domain.gateway import GatewayPolicy, Outcome, Principal
from llmserver.domain.inference import StreamEnd
from llmserver.domain.logs import CacheStatus
from llmserver.domain.ports import CachedCompletion, RowsRejected

from .world import MODEL, World, ask, origin, wait_until

PROMPT_TOKENS = 5  # "what is six times seven"
REPLY_TOKENS = 5  # "the answer is forty two"


# -- caching ----------------------------------------------------------------------------


async def test_a_deterministic_request_misses_then_hits_the_hot_cache() -> None:
    world = World()
    principal = await world.principal()
    miss = await world.gateway.complete(principal, ask(), origin("r1"))
    hit = await world.gateway.complete(principal, ask(), origin("r2"))

    assert (miss.cache_status, hit.cache_status) == (CacheStatus.MISS, CacheStatus.HIT)
    assert hit.completion == miss.completion
    assert world.backend.generate_calls == 1
    assert world.telemetry.of("cache_lookup") == [
        ("hot", False),
        ("durable", False),
        ("hot", True),
    ]
    assert [row.cache_status for row in world.logs] == [CacheStatus.MISS, CacheStatus.HIT]
    # Hits are free by default but counted.
    usage = await world.usage_of(principal)
    assert (usage.used_tokens, usage.requests, usage.cache_hits) == (10, 2, 1)
    assert world.telemetry.of("tokens") == [(MODEL, 5, 5), (MODEL, 5, 5)]


async def test_a_hot_cache_hit_reuses_the_stored_token_count() -> None:
    world = World()
    principal = await world.principal()
    miss = await world.gateway.complete(principal, ask(), origin("r1"))
    hit = await world.gateway.complete(principal, ask(), origin("r2"))
    session = await world.gateway.open_stream(principal, ask(), origin("r3"))
    events = [event async for event in session.events]

    assert world.backend.count_calls == 1  # the tokenizer ran for the miss only
    assert hit.completion.prompt_tokens == miss.completion.prompt_tokens
    assert session.cache_status is CacheStatus.HIT
    assert isinstance(events[-1], StreamEnd)
    assert events[-1].prompt_tokens == miss.completion.prompt_tokens
    assert (await world.usage_of(principal)).reserved_tokens == 0
    # The durable layer is asked only after the count, like any miss of the hot layer.
    cold = World(hot=False)
    cold_principal = await cold.principal()
    await cold.gateway.complete(cold_principal, ask(), origin("r1"))
    await cold.gateway.complete(cold_principal, ask(), origin("r2"))
    assert cold.backend.count_calls == 2


async def test_a_hot_cache_hit_still_needs_room_in_the_quota() -> None:
    world = World()
    principal = await world.principal(quota_tokens=20)
    await world.gateway.complete(principal, ask(), origin("r1"))  # a miss: uses 10 of 20
    with pytest.raises(QuotaExceeded) as caught:
        await world.gateway.complete(principal, ask(), origin("r2"))  # free, but reserves 5 + 8
    assert (caught.value.needed, caught.value.remaining) == (13, 10)
    assert world.backend.count_calls == 1
    assert (await world.usage_of(principal)).reserved_tokens == 0


async def test_the_durable_cache_answers_and_refills_the_hot_cache() -> None:
    world = World()
    principal = await world.principal()
    await world.gateway.complete(principal, ask(), origin("r1"))
    # A fresh process: the hot cache is empty, the durable cache still holds the answer.
    restarted = World(cache=world.cache, keys=world.keys, usage=world.usage, clock=world.clock)
    second = await restarted.gateway.complete(principal, ask(), origin("r2"))
    third = await restarted.gateway.complete(principal, ask(), origin("r3"))

    assert (second.cache_status, third.cache_status) == (CacheStatus.HIT, CacheStatus.HIT)
    assert restarted.backend.generate_calls == 0
    assert restarted.telemetry.of("cache_lookup") == [
        ("hot", False),
        ("durable", True),
        ("hot", True),
    ]


class RefusingCache(MemoryCompletionCache):
    """A durable cache that cannot hold the answer, as PostgreSQL cannot hold U+0000."""

    async def put(self, entry: CachedCompletion) -> None:
        raise RowsRejected("unsupported Unicode escape sequence")


async def test_an_answer_the_cache_cannot_hold_is_served_uncached() -> None:
    world = World(cache=RefusingCache())
    principal = await world.principal()

    first = await world.gateway.complete(principal, ask(), origin("r1"))
    second = await world.gateway.complete(principal, ask(), origin("r2"))

    assert (first.cache_status, second.cache_status) == (CacheStatus.MISS, CacheStatus.MISS)
    assert world.backend.generate_calls == 2
    assert [log.status for log in world.logs] == [200, 200]


async def test_without_a_hot_cache_only_the_durable_layer_is_asked() -> None:
    world = World(hot=False)
    principal = await world.principal()
    await world.gateway.complete(principal, ask(), origin("r1"))
    assert (
        await world.gateway.complete(principal, ask(), origin("r2"))
    ).cache_status is CacheStatus.HIT
    assert world.telemetry.of("cache_lookup") == [("durable", False), ("durable", True)]


async def test_expired_entries_are_not_served() -> None:
    world = World(hot=False, policy=GatewayPolicy(cache=CachePolicy(ttl_seconds=60)))
    principal = await world.principal()
    await world.gateway.complete(principal, ask(), origin("r1"))
    world.clock.advance(60)
    assert (
        await world.gateway.complete(principal, ask(), origin("r2"))
    ).cache_status is CacheStatus.MISS


async def test_cache_hits_can_be_charged_by_policy() -> None:
    world = World(policy=GatewayPolicy(cache_hits_count_against_quota=True))
    principal = await world.principal()
    await world.gateway.complete(principal, ask(), origin("r1"))
    await world.gateway.complete(principal, ask(), origin("r2"))
    usage = await world.usage_of(principal)
    assert (usage.used_tokens, usage.cache_hits) == (20, 1)


@pytest.mark.parametrize(
    "request_fields",
    [
        {"use_cache": False},
        {"temperature": 0.8},
        {"temperature": 0.8, "seed": None},
    ],
    ids=["opted-out", "sampled", "sampled-without-seed"],
)
async def test_opted_out_or_non_deterministic_requests_bypass_the_cache(
    request_fields: dict[str, Any],
) -> None:
    world = World()
    principal = await world.principal()
    for request_id in ("r1", "r2"):
        outcome = await world.gateway.complete(principal, ask(**request_fields), origin(request_id))
        assert outcome.cache_status is CacheStatus.BYPASS
    assert world.backend.generate_calls == 2
    assert world.telemetry.of("cache_lookup") == []


async def test_a_sampled_request_with_a_seed_is_cached() -> None:
    world = World()
    principal = await world.principal()
    first = await world.gateway.complete(principal, ask(temperature=0.8, seed=1), origin("r1"))
    second = await world.gateway.complete(principal, ask(temperature=0.8, seed=1), origin("r2"))
    other_seed = await world.gateway.complete(principal, ask(temperature=0.8, seed=2), origin("r3"))
    assert [first.cache_status, second.cache_status, other_seed.cache_status] == [
        CacheStatus.MISS,
        CacheStatus.HIT,
        CacheStatus.MISS,
    ]


async def test_caching_can_be_switched_off_by_policy() -> None:
    world = World(policy=GatewayPolicy(cache=CachePolicy(enabled=False)))
    principal = await world.principal()
    await world.gateway.complete(principal, ask(), origin("r1"))
    assert (
        await world.gateway.complete(principal, ask(), origin("r2"))
    ).cache_status is CacheStatus.BYPASS


# -- single-flight ----------------------------------------------------------------------

SHARED = GatewayPolicy(cache=CachePolicy(shared_across_keys=True))
"""Answers shared by every key, so that identical requests of different keys share one
inference (per key, the default, only one key's requests do: see ``test_cache_keys``)."""


async def start_identical(world: World, principals: list[Principal]) -> list[asyncio.Task[Outcome]]:
    tasks: list[asyncio.Task[Outcome]] = [
        asyncio.create_task(world.gateway.complete(p, ask(), origin(f"r{i}")))
        for i, p in enumerate(principals)
    ]
    await wait_until(lambda: world.backend.generate_calls >= 1)
    for _ in range(10):
        await asyncio.sleep(0)
    return tasks


async def test_identical_concurrent_requests_share_one_inference() -> None:
    world = World(policy=SHARED)
    world.backend.gate = asyncio.Event()
    principals = [await world.principal() for _ in range(6)]
    tasks = await start_identical(world, principals)
    assert world.backend.generate_calls == 1
    world.backend.gate.set()
    outcomes = await asyncio.gather(*tasks)

    assert world.backend.generate_calls == 1
    assert {o.completion.text for o in outcomes} == {"the answer is forty two"}
    statuses = sorted(o.cache_status for o in outcomes)
    assert statuses == [CacheStatus.HIT] * 5 + [CacheStatus.MISS]
    for principal in principals:
        usage = await world.usage_of(principal)
        assert usage.reserved_tokens == 0
        assert usage.requests == 1
    assert sum([(await world.usage_of(p)).used_tokens for p in principals]) == 10
    assert len(world.logs) == 6
    assert len(world.telemetry.of("generation")) == 1
    assert not world.gateway._inflight


async def test_a_leader_failure_reaches_every_follower_and_releases_all() -> None:
    world = World(policy=SHARED)
    world.backend.gate = asyncio.Event()
    world.backend.error = RuntimeError("boom")
    principals = [await world.principal() for _ in range(4)]
    tasks = await start_identical(world, principals)
    world.backend.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)

    assert all(isinstance(r, RuntimeError) for r in results)
    assert world.backend.generate_calls == 1
    assert world.telemetry.of("backend_error") == [(MODEL, "RuntimeError")]
    for principal in principals:
        usage = await world.usage_of(principal)
        assert (usage.reserved_tokens, usage.used_tokens) == (0, 0)
    assert sorted(row.status for row in world.logs) == [500] * 4
    assert not world.gateway._inflight


async def test_followers_still_get_the_answer_when_the_leader_goes_away() -> None:
    world = World(policy=SHARED)
    world.backend.gate = asyncio.Event()
    principals = [await world.principal() for _ in range(3)]
    leader, *followers = await start_identical(world, principals)
    leader.cancel()
    await asyncio.sleep(0)
    world.backend.gate.set()
    outcomes = await asyncio.gather(*followers)

    assert leader.cancelled()
    assert world.backend.cancelled == 0
    assert all(o.completion.text == "the answer is forty two" for o in outcomes)
    assert (await world.usage_of(principals[0])).reserved_tokens == 0
    assert sorted(row.status for row in world.logs) == [200, 200, 499]


async def test_the_shared_inference_stops_when_every_waiter_goes_away() -> None:
    world = World(policy=SHARED)
    world.backend.gate = asyncio.Event()
    principals = [await world.principal() for _ in range(3)]
    tasks = await start_identical(world, principals)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await wait_until(lambda: world.backend.cancelled == 1)

    assert not world.gateway._inflight
    for principal in principals:
        assert (await world.usage_of(principal)).reserved_tokens == 0
    # Nothing half-done was cached: a new request runs inference again.
    world.backend.gate.set()
    outcome = await world.gateway.complete(principals[0], ask(), origin("again"))
    assert outcome.cache_status is CacheStatus.MISS
    assert world.backend.generate_calls == 2
