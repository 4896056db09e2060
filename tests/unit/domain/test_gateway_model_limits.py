"""A key's own limits on one model (``ModelLimit``): an extra cap on that model's share,
in windows of their own, while the key's limits still cap its total; every hold of a
refused request is given back."""

from __future__ import annotations

import pytest

from llmserver.domain.embeddings import EmbeddingRequest
from llmserver.domain.errors import RateLimited, TokenRateLimited, TooLargeForTokenRate
from llmserver.domain.gateway import Principal
from llmserver.domain.key_limits import ModelLimit
from llmserver.domain.logs import Origin

from .world import EMBED_MODEL, MODEL, NEEDS, USES, World, ask, origin


def now_ms(world: World) -> int:
    return int(world.clock.now().timestamp() * 1000)


def held(world: World, bucket: str) -> int:
    return world.token_rate.held(bucket, now_ms(world))


async def embed(world: World, principal: Principal, request_id: str) -> None:
    request = EmbeddingRequest(EMBED_MODEL, ("a b",))
    await world.gateway.embed(
        principal, request, Origin(request_id, "/v1/embeddings", origin(request_id).status_of)
    )


async def test_a_model_rpm_limit_refuses_that_model_only() -> None:
    world = World()
    principal = await world.principal(model_limits=(ModelLimit(MODEL, rpm_limit=1),))

    first = await world.gateway.complete(principal, ask(use_cache=False), origin("r1"))
    with pytest.raises(RateLimited, match=f"1 requests per minute on model {MODEL}") as caught:
        await world.gateway.complete(principal, ask(use_cache=False), origin("r2"))
    for n in range(3):
        await embed(world, principal, f"e{n}")

    assert first.rate is not None
    assert (first.rate.limit, first.rate.remaining) == (1, 0)
    assert caught.value.retry_after == 60.0
    assert world.backend.generate_calls == 1
    world.clock.advance(60)
    await world.gateway.complete(principal, ask(use_cache=False), origin("r3"))


async def test_the_key_rpm_still_caps_the_total_over_its_models() -> None:
    world = World()
    principal = await world.principal(rpm_limit=2, model_limits=(ModelLimit(MODEL, rpm_limit=5),))

    first = await world.gateway.complete(principal, ask(use_cache=False), origin("r1"))
    await embed(world, principal, "e1")
    with pytest.raises(RateLimited, match=r"2 requests per minute\. ") as caught:
        await world.gateway.complete(principal, ask(use_cache=False), origin("r2"))

    # The headers show the tighter window: the key's (1 left) rather than the model's (4).
    assert first.rate is not None
    assert (first.rate.limit, first.rate.remaining) == (2, 1)
    assert caught.value.rate is not None
    assert caught.value.rate.limit == 2


async def test_a_model_tpm_limit_holds_its_own_window_settled_with_the_keys() -> None:
    world = World()
    principal = await world.principal(
        tpm_limit=1_000, max_parallel=2, model_limits=(ModelLimit(MODEL, tpm_limit=30),)
    )
    key_bucket, model_bucket = f"tpm:{principal.key.id}", f"tpm:{principal.key.id}:{MODEL}"

    first = await world.gateway.complete(principal, ask(use_cache=False), origin("r1"))
    await world.gateway.complete(principal, ask(use_cache=False), origin("r2"))
    with pytest.raises(TokenRateLimited, match=f"30 tokens per minute on model {MODEL}"):
        await world.gateway.complete(principal, ask(use_cache=False), origin("r3"))

    # The headers show the tighter TPM window: the model's.
    assert first.token_rate is not None
    assert (first.token_rate.limit, first.token_rate.remaining) == (30, 30 - NEEDS)
    # Both windows hold the two settled requests; the refused one left nothing anywhere.
    assert held(world, model_bucket) == 2 * USES
    assert held(world, key_bucket) == 2 * USES
    assert world.parallel.held(f"par:{principal.key.id}") == 0
    assert (await world.usage_of(principal)).reserved_tokens == 0


async def test_a_request_larger_than_the_models_tpm_limit_is_a_400_that_holds_nothing() -> None:
    world = World()
    principal = await world.principal(
        tpm_limit=1_000, model_limits=(ModelLimit(MODEL, tpm_limit=NEEDS - 1),)
    )

    with pytest.raises(TooLargeForTokenRate, match=f"tokens per minute on model {MODEL}"):
        await world.gateway.complete(principal, ask(use_cache=False), origin("r1"))

    assert held(world, f"tpm:{principal.key.id}") == 0
    assert world.backend.generate_calls == 0


async def test_a_failed_request_releases_both_tpm_windows() -> None:
    world = World()
    principal = await world.principal(
        tpm_limit=1_000, model_limits=(ModelLimit(MODEL, tpm_limit=100),)
    )
    world.backend.error = RuntimeError("GPU on fire")

    with pytest.raises(RuntimeError):
        await world.gateway.complete(principal, ask(use_cache=False), origin("r1"))

    assert held(world, f"tpm:{principal.key.id}") == 0
    assert held(world, f"tpm:{principal.key.id}:{MODEL}") == 0


async def test_a_key_without_model_limits_takes_no_model_window() -> None:
    world = World()
    principal = await world.principal(rpm_limit=5, tpm_limit=100)

    await world.gateway.complete(principal, ask(use_cache=False), origin("r1"))

    assert held(world, f"tpm:{principal.key.id}:{MODEL}") == 0
    assert held(world, f"tpm:{principal.key.id}") == USES
