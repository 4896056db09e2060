"""The non-streaming use case: answers, policy refusals, failures (caching and
single-flight: ``test_gateway_cache``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from llmserver.domain.errors import (
    ContextLengthExceeded,
    InvalidRequest,
    Overloaded,
    QuotaExceeded,
    RateLimited,
    Unavailable,
)
from llmserver.domain.inference import FinishReason
from llmserver.domain.logs import CacheStatus

from .fakes import FakeClock
from .world import MODEL, World, ask, origin, wait_until

PROMPT_TOKENS = 5  # "what is six times seven"
REPLY_TOKENS = 5  # "the answer is forty two"


async def test_a_completion_is_answered_settled_and_logged() -> None:
    world = World()
    principal = await world.principal()
    outcome = await world.gateway.complete(principal, ask(temperature=0.7), origin("r1"))

    assert outcome.completion.text == "the answer is forty two"
    assert outcome.completion.finish_reason is FinishReason.STOP
    assert outcome.cache_status is CacheStatus.BYPASS
    assert outcome.created == world.clock.now()
    usage = await world.usage_of(principal)
    assert (usage.used_tokens, usage.reserved_tokens, usage.requests) == (10, 0, 1)
    [row] = world.logs
    assert (row.request_id, row.status, row.key_id, row.model) == (
        "r1",
        200,
        principal.key.id,
        MODEL,
    )
    assert (row.prompt_tokens, row.completion_tokens, row.cache_status) == (
        5,
        5,
        CacheStatus.BYPASS,
    )
    assert (row.error_code, row.stream) == (None, False)
    assert world.telemetry.of("tokens") == [(MODEL, 5, 5)]
    assert [e[0] for e in world.telemetry.of("generation")] == [MODEL]


async def test_model_defaults_fill_what_the_request_leaves_out() -> None:
    world = World()
    principal = await world.principal()
    await world.gateway.complete(principal, ask(use_cache=False), origin("r1"))
    await world.gateway.complete(principal, ask(max_tokens=3, top_p=0.5, seed=7), origin("r2"))
    defaults, explicit = world.backend.seen_params
    assert (defaults.max_tokens, defaults.temperature, defaults.top_p) == (8, 0.0, 1.0)
    assert (explicit.max_tokens, explicit.top_p, explicit.seed) == (3, 0.5, 7)


async def test_max_tokens_below_one_is_an_invalid_request() -> None:
    world = World()
    principal = await world.principal()
    with pytest.raises(InvalidRequest) as caught:
        await world.gateway.complete(principal, ask(max_tokens=0), origin("r1"))
    assert caught.value.param == "max_tokens"
    assert world.logs[0].status == 400


# -- refusals -------------------------------------------------------------------------


async def test_rpm_refusal_carries_an_exact_retry_after() -> None:
    world = World()
    principal = await world.principal(rpm_limit=2)
    first = await world.gateway.complete(principal, ask(use_cache=False), origin("r1"))
    assert first.rate is not None
    assert (first.rate.limit, first.rate.remaining) == (2, 1)
    world.clock.advance(10)
    await world.gateway.complete(principal, ask(use_cache=False), origin("r2"))
    world.clock.advance(5)

    with pytest.raises(RateLimited) as caught:
        await world.gateway.complete(principal, ask(use_cache=False), origin("r3"))
    assert caught.value.retry_after == 45.0
    assert caught.value.rate is not None
    assert caught.value.rate.remaining == 0
    assert world.backend.generate_calls == 2
    assert world.telemetry.of("refused") == [("rpm",)]
    assert (world.logs[-1].status, world.logs[-1].error_code) == (429, "rate_limit_exceeded")

    world.clock.advance(45)
    await world.gateway.complete(principal, ask(use_cache=False), origin("r4"))
    assert world.backend.generate_calls == 3


async def test_quota_refusal_says_what_is_left_and_when_it_resets() -> None:
    world = World()
    principal = await world.principal(quota_tokens=20, rpm_limit=100)
    await world.gateway.complete(principal, ask(use_cache=False), origin("r1"))  # uses 10 of 20
    with pytest.raises(QuotaExceeded) as caught:
        await world.gateway.complete(principal, ask(use_cache=False), origin("r2"))  # needs 5 + 8

    error = caught.value
    assert (error.needed, error.remaining, error.quota) == (13, 10, 20)
    assert error.reset_at == datetime(2026, 4, 1, tzinfo=UTC)
    assert error.rate is not None
    assert world.backend.generate_calls == 1
    assert world.telemetry.of("refused") == [("quota",)]
    assert (world.logs[-1].status, world.logs[-1].error_code) == (429, "insufficient_quota")
    assert (await world.usage_of(principal)).reserved_tokens == 0

    fits = await world.gateway.complete(principal, ask(use_cache=False, max_tokens=5), origin("r3"))
    assert fits.completion.total_tokens == 10
    assert (await world.usage_of(principal)).used_tokens == 20


async def test_the_quota_starts_afresh_at_midnight_utc_on_the_first() -> None:
    world = World(clock=FakeClock(datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)))
    principal = await world.principal(quota_tokens=13)
    await world.gateway.complete(principal, ask(use_cache=False), origin("r1"))
    with pytest.raises(QuotaExceeded) as caught:
        await world.gateway.complete(principal, ask(use_cache=False), origin("r2"))
    assert caught.value.reset_at == datetime(2027, 1, 1, tzinfo=UTC)

    world.clock.advance(1)
    await world.gateway.complete(principal, ask(use_cache=False), origin("r3"))
    december = await world.usage_of(principal, datetime(2026, 12, 1, tzinfo=UTC))
    january = await world.usage_of(principal)
    assert (december.period, december.used_tokens) == ("2026-12", 10)
    assert (january.period, january.used_tokens) == ("2027-01", 10)


async def test_a_prompt_too_long_for_the_context_is_refused_before_reserving() -> None:
    world = World()
    principal = await world.principal()
    with pytest.raises(ContextLengthExceeded) as caught:
        await world.gateway.complete(principal, ask("word " * 57), origin("r1"))  # 57 + 8 > 64
    assert (caught.value.prompt_tokens, caught.value.context_length) == (57, 64)
    assert world.backend.generate_calls == 0
    assert (await world.usage_of(principal)).reserved_tokens == 0
    assert world.telemetry.of("refused") == [("context_length",)]
    assert world.logs[0].error_code == "context_length_exceeded"
    await world.gateway.complete(principal, ask("word " * 56), origin("r2"))


async def test_a_prompt_provably_too_long_is_refused_without_counting_its_tokens() -> None:
    world = World()
    world.backend.chars_per_token = 5
    principal = await world.principal()
    with pytest.raises(ContextLengthExceeded) as caught:
        await world.gateway.complete(principal, ask("word " * 200_000), origin("r1"))  # 1 MB
    assert world.backend.count_calls == 0
    assert caught.value.prompt_tokens == 200_000
    assert "has at least 200000 prompt tokens" in caught.value.message
    assert (await world.usage_of(principal)).reserved_tokens == 0
    assert world.telemetry.of("refused") == [("context_length",)]
    assert world.logs[0].error_code == "context_length_exceeded"
    # At the limit the floor proves nothing: the prompt is counted, and fits.
    await world.gateway.complete(principal, ask("word " * 56), origin("r2"))
    assert world.backend.count_calls == 1


async def test_a_full_backend_queue_is_refused_and_releases_the_reservation() -> None:
    world = World()
    world.backend.error = Overloaded("queue full", retry_after=2)
    principal = await world.principal()
    with pytest.raises(Overloaded):
        await world.gateway.complete(principal, ask(), origin("r1"))
    usage = await world.usage_of(principal)
    assert (usage.used_tokens, usage.reserved_tokens, usage.requests) == (0, 0, 0)
    assert world.telemetry.of("refused") == [("queue_full",)]
    assert world.telemetry.of("backend_error") == []
    assert (world.logs[0].status, world.logs[0].error_code) == (503, "model_overloaded")


async def test_a_backend_failure_releases_and_is_counted_by_kind() -> None:
    world = World()
    world.backend.error = RuntimeError("CUDA error")
    principal = await world.principal()
    with pytest.raises(RuntimeError):
        await world.gateway.complete(principal, ask(), origin("r1"))
    assert (await world.usage_of(principal)).reserved_tokens == 0
    assert world.telemetry.of("backend_error") == [(MODEL, "RuntimeError")]
    assert world.telemetry.of("tokens") == []
    [row] = world.logs
    assert (row.status, row.error_code, row.cache_status) == (500, "RuntimeError", CacheStatus.MISS)
    # A failure is not cached: the next identical request runs inference again.
    world.backend.error = None
    assert (
        await world.gateway.complete(principal, ask(), origin("r2"))
    ).cache_status is CacheStatus.MISS


async def test_a_model_that_is_not_loaded_is_unavailable() -> None:
    world = World()
    principal = await world.principal()
    with pytest.raises(Unavailable):
        await world.gateway.complete(principal, ask(model="other-model"), origin("r1"))
    assert world.telemetry.of("backend_error") == [("other-model", "service_unavailable")]
    assert world.logs[0].status == 503


async def test_a_cancelled_request_pays_its_prompt_and_frees_the_rest() -> None:
    world = World()
    world.backend.gate = asyncio.Event()
    principal = await world.principal()
    task = asyncio.create_task(
        world.gateway.complete(principal, ask(use_cache=False), origin("r1"))
    )
    await wait_until(lambda: world.backend.generate_calls == 1)
    assert (await world.usage_of(principal)).reserved_tokens == 13
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert world.backend.cancelled == 1
    usage = await world.usage_of(principal)
    assert (usage.reserved_tokens, usage.used_tokens) == (0, PROMPT_TOKENS)
    [row] = world.logs
    assert (row.status, row.error_code) == (499, "client_closed_request")
    assert (row.prompt_tokens, row.completion_tokens) == (PROMPT_TOKENS, 0)
