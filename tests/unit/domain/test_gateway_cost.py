"""What requests cost: computed when they settle, on their log rows and in telemetry."""

from __future__ import annotations

import pytest

from llmserver.domain.errors import QuotaExceeded
from llmserver.domain.gateway import GatewayPolicy
from llmserver.domain.logs import CacheStatus
from llmserver.domain.pricing import Prices

from .test_gateway_embeddings import embedding_origin, texts
from .world import EMBED_MODEL, MODEL, World, ask, origin

PRICES = Prices(input=150_000, output=600_000)  # $0.15 and $0.60 per million tokens
ANSWER = 5 * 150_000 + 5 * 600_000  # "what is six times seven" -> "the answer is forty two"


async def test_a_served_request_costs_its_tokens_at_the_models_prices() -> None:
    world = World(prices=PRICES)
    principal = await world.principal()
    await world.gateway.complete(principal, ask(), origin("r1"))

    [row] = world.logs
    assert (row.prompt_tokens, row.completion_tokens) == (5, 5)
    assert row.cost_picodollars == ANSWER
    assert world.telemetry.of("spend") == [(MODEL, ANSWER)]


async def test_a_cache_hit_is_free_unless_hits_count_against_quota() -> None:
    free = World(prices=PRICES)
    charged = World(prices=PRICES, policy=GatewayPolicy(cache_hits_count_against_quota=True))
    for world in (free, charged):
        principal = await world.principal()
        await world.gateway.complete(principal, ask(), origin("miss"))
        await world.gateway.complete(principal, ask(), origin("hit"))
        assert [row.cache_status for row in world.logs] == [CacheStatus.MISS, CacheStatus.HIT]

    assert [row.cost_picodollars for row in free.logs] == [ANSWER, 0]
    assert free.telemetry.of("spend") == [(MODEL, ANSWER)]
    # Billed as the request it replays, as its tokens are charged to the quota.
    assert [row.cost_picodollars for row in charged.logs] == [ANSWER, ANSWER]
    assert charged.telemetry.of("spend") == [(MODEL, ANSWER), (MODEL, ANSWER)]


async def test_a_stream_cut_short_costs_the_tokens_it_was_charged() -> None:
    world = World(prices=PRICES)
    principal = await world.principal()
    session = await world.gateway.open_stream(principal, ask(), origin("s1"))
    await anext(session.events)
    await anext(session.events)
    await session.events.aclose()  # type: ignore[attr-defined]

    [row] = world.logs
    assert (row.status, row.completion_tokens) == (499, 2)
    assert row.cost_picodollars == 5 * 150_000 + 2 * 600_000


async def test_refused_requests_and_free_models_cost_nothing() -> None:
    world = World(prices=PRICES)
    principal = await world.principal(quota_tokens=3)
    with pytest.raises(QuotaExceeded):
        await world.gateway.complete(principal, ask(), origin("refused"))
    free = World()
    await free.gateway.complete(await free.principal(), ask(), origin("free"))

    assert [row.cost_picodollars for row in (*world.logs, *free.logs)] == [0, 0]
    assert world.telemetry.of("spend") == free.telemetry.of("spend") == []


async def test_an_embedding_costs_its_input_tokens_at_the_input_price() -> None:
    world = World(prices=PRICES)
    principal = await world.principal()
    outcome = await world.gateway.embed(
        principal, texts("one two three", "four"), embedding_origin("e1")
    )

    assert outcome.embeddings.prompt_tokens == 4
    [row] = world.logs
    assert (row.model, row.cost_picodollars) == (EMBED_MODEL, 4 * 150_000)
    assert world.telemetry.of("spend") == [(EMBED_MODEL, 4 * 150_000)]


async def test_cached_input_tokens_cost_the_cached_input_price_streamed_or_not() -> None:
    world = World(prices=Prices(input=150_000, output=600_000, cached_input=75_000))
    world.backend.cached_tokens = 3
    principal = await world.principal()
    await world.gateway.complete(principal, ask(), origin("whole"))
    session = await world.gateway.open_stream(principal, ask(use_cache=False), origin("streamed"))
    async for _ in session.events:
        pass

    cost = 2 * 150_000 + 3 * 75_000 + 5 * 600_000
    assert [row.cost_picodollars for row in world.logs] == [cost, cost]
    # Without a cached-input price, cached tokens cost the input price.
    plain = World(prices=PRICES)
    plain.backend.cached_tokens = 3
    await plain.gateway.complete(await plain.principal(), ask(), origin("plain"))
    assert plain.logs[0].cost_picodollars == ANSWER
