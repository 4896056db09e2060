"""The embedding use case: the completion's policy path (model access, RPM, quota, cache,
single-flight, logs) with vectors for an answer."""

from __future__ import annotations

import asyncio

import pytest

from llmserver.domain.cache_keys import embedding_cache_key
from llmserver.domain.embeddings import (
    EmbeddingRequest,
    check_dimensions,
    float32_bytes,
    floats,
    from_cache_text,
    to_cache_text,
)
from llmserver.domain.errors import (
    InputTooLong,
    InvalidRequest,
    ModelNotAllowed,
    QuotaExceeded,
    RateLimited,
    WrongModelKind,
)
from llmserver.domain.logs import CacheStatus, Origin

from .world import EMBED_MODEL, MODEL, World, ask, origin, wait_until


def embedding_origin(request_id: str) -> Origin:
    return Origin(request_id, "/v1/embeddings", origin(request_id).status_of)


def texts(*inputs: str | tuple[int, ...], **fields: object) -> EmbeddingRequest:
    return EmbeddingRequest(EMBED_MODEL, tuple(inputs), **fields)  # type: ignore[arg-type]


async def test_vectors_come_in_the_inputs_order_and_usage_counts_their_tokens() -> None:
    world = World()
    principal = await world.principal()
    outcome = await world.gateway.embed(
        principal, texts("one two three", "four", (7, 8)), embedding_origin("r1")
    )
    assert [floats(v)[:2] for v in outcome.embeddings.vectors] == [[3, 13], [1, 4], [2, 2]]
    assert outcome.embeddings.prompt_tokens == 6
    assert outcome.cache_status is CacheStatus.MISS
    assert (await world.usage_of(principal)).used_tokens == 6
    [row] = world.logs
    assert (row.route, row.status, row.model, row.prompt_tokens, row.completion_tokens) == (
        "/v1/embeddings",
        200,
        EMBED_MODEL,
        6,
        0,
    )


async def test_identical_requests_hit_the_cache_and_settle_nothing_more() -> None:
    world = World()
    principal = await world.principal()
    request = texts("same words here", dimensions=3)
    miss = await world.gateway.embed(principal, request, embedding_origin("r1"))
    hit = await world.gateway.embed(principal, request, embedding_origin("r2"))
    assert (miss.cache_status, hit.cache_status) == (CacheStatus.MISS, CacheStatus.HIT)
    assert hit.embeddings == miss.embeddings
    assert world.embedder.calls == 1
    assert (await world.usage_of(principal)).used_tokens == 3
    other = await world.gateway.embed(
        principal, texts("same words here", dimensions=2), embedding_origin("r3")
    )
    assert other.cache_status is CacheStatus.MISS
    assert len(floats(other.embeddings.vectors[0])) == 2


async def test_concurrent_identical_requests_share_one_inference() -> None:
    world = World()
    world.embedder.gate = asyncio.Event()
    principal = await world.principal()
    first = asyncio.ensure_future(
        world.gateway.embed(principal, texts("a b"), embedding_origin("1"))
    )
    second = asyncio.ensure_future(
        world.gateway.embed(principal, texts("a b"), embedding_origin("2"))
    )
    await wait_until(lambda: world.embedder.calls == 1)
    world.embedder.gate.set()
    statuses = sorted(o.cache_status.value for o in await asyncio.gather(first, second))
    assert statuses == ["HIT", "MISS"]
    assert world.embedder.calls == 1


async def test_opting_out_bypasses_the_cache() -> None:
    world = World()
    principal = await world.principal()
    for n in range(2):
        outcome = await world.gateway.embed(
            principal, texts("x", use_cache=False), embedding_origin(f"{n}")
        )
        assert outcome.cache_status is CacheStatus.BYPASS
    assert world.embedder.calls == 2


async def test_the_quota_refuses_inputs_it_cannot_cover() -> None:
    world = World()
    principal = await world.principal(quota_tokens=4)
    with pytest.raises(QuotaExceeded):
        await world.gateway.embed(principal, texts("a b c", "d e"), embedding_origin("r1"))
    assert world.embedder.calls == 0
    assert (await world.usage_of(principal)).reserved_tokens == 0
    assert [(r.status, r.error_code) for r in world.logs] == [(429, "insufficient_quota")]


async def test_rpm_applies_to_embeddings_and_completions_alike() -> None:
    world = World()
    principal = await world.principal(rpm_limit=2)
    await world.gateway.embed(principal, texts("a"), embedding_origin("r1"))
    await world.gateway.complete(principal, ask(), origin("r2"))
    with pytest.raises(RateLimited):
        await world.gateway.embed(principal, texts("b"), embedding_origin("r3"))


async def test_an_input_longer_than_the_model_takes_is_refused_before_the_quota() -> None:
    world = World()
    principal = await world.principal()
    with pytest.raises(InputTooLong) as refused:
        await world.gateway.embed(
            principal, texts("ok", " ".join(["w"] * 17)), embedding_origin("r")
        )
    assert refused.value.param == "input"
    assert "Input 1 has 17 tokens" in refused.value.message
    assert (await world.usage_of(principal)).reserved_tokens == 0


async def test_each_surface_refuses_the_other_kind_of_model() -> None:
    world = World()
    principal = await world.principal()
    with pytest.raises(WrongModelKind, match="/v1/chat/completions"):
        await world.gateway.embed(
            principal, EmbeddingRequest(MODEL, ("a",)), embedding_origin("r1")
        )
    with pytest.raises(WrongModelKind, match="/v1/embeddings"):
        await world.gateway.complete(principal, ask(model=EMBED_MODEL), origin("r2"))
    assert [r.status for r in world.logs] == [400, 400]


async def test_model_access_applies() -> None:
    world = World()
    principal = await world.principal(allowed_models=(MODEL,))
    with pytest.raises(ModelNotAllowed):
        await world.gateway.embed(principal, texts("a"), embedding_origin("r1"))


async def test_a_cancelled_request_pays_for_its_inputs() -> None:
    world = World()
    world.embedder.gate = asyncio.Event()
    principal = await world.principal()
    task = asyncio.ensure_future(
        world.gateway.embed(principal, texts("one two", use_cache=False), embedding_origin("r"))
    )
    await wait_until(lambda: world.embedder.calls == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    usage = await world.usage_of(principal)
    assert (usage.used_tokens, usage.reserved_tokens) == (2, 0)
    assert [r.status for r in world.logs] == [499]


def test_embedding_keys_never_equal_completion_keys_and_tell_ids_from_text() -> None:
    def key(*inputs: str | tuple[int, ...]) -> str:
        return embedding_cache_key(
            owner="k", model_id="m", revision="r", inputs=inputs, dimensions=None
        )

    assert key("12") != key((1, 2)) != key((12,))
    assert key("a", "b") != key("a b")
    assert key("a") == key("a")


def test_cache_text_round_trips_vectors() -> None:
    vectors = [float32_bytes([0.5, -1.25, 3.0]), float32_bytes([1e-8])]
    assert from_cache_text(to_cache_text(vectors)) == vectors
    assert floats(vectors[0]) == [0.5, -1.25, 3.0]


def test_dimensions_are_refused_where_the_model_cannot_give_them() -> None:
    check_dimensions(None, 8, supported=False, model="m")
    check_dimensions(8, 8, supported=False, model="m")
    check_dimensions(3, 8, supported=True, model="m")
    with pytest.raises(InvalidRequest, match="does not support"):
        check_dimensions(3, 8, supported=False, model="m")
    with pytest.raises(InvalidRequest, match="from 1 to 8"):
        check_dimensions(9, 8, supported=True, model="m")
