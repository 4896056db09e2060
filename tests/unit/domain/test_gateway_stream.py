"""The streaming use case: same policy, settled to what the client was sent."""

from __future__ import annotations

import asyncio

import pytest

from llmserver.domain.errors import Overloaded, QuotaExceeded, UpstreamError
from llmserver.domain.gateway import StreamSession
from llmserver.domain.inference import FinishReason, StreamEnd, StreamEvent, TextDelta
from llmserver.domain.logs import CacheStatus

from .world import MODEL, World, ask, origin, wait_until


async def drain(session: StreamSession) -> list[StreamEvent]:
    return [event async for event in session.events]


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_a_stream_delivers_deltas_then_one_end_and_settles() -> None:
    world = World()
    world.backend.token_seconds = 0.25
    principal = await world.principal()
    session = await world.gateway.open_stream(principal, ask(temperature=0.5), origin("s1"))
    assert (session.model.id, session.cache_status) == (MODEL, CacheStatus.BYPASS)
    events = await drain(session)

    assert text_of(events) == "the answer is forty two"
    assert events[-1] == StreamEnd(FinishReason.STOP, 5, 5)
    assert sum(isinstance(e, StreamEnd) for e in events) == 1
    usage = await world.usage_of(principal)
    assert (usage.used_tokens, usage.reserved_tokens, usage.requests) == (10, 0, 1)
    [row] = world.logs
    assert (row.status, row.stream, row.prompt_tokens, row.completion_tokens) == (200, True, 5, 5)
    assert world.backend.streams_closed == 1
    # The first token took one token-time after admission; the whole stream five.
    assert world.telemetry.of("first_token") == [(MODEL, 0.25)]
    assert world.telemetry.of("generation") == [(MODEL, 1.25, 5)]
    assert world.telemetry.of("tokens") == [(MODEL, 5, 5)]


async def test_a_streamed_answer_is_cached_and_replayed() -> None:
    world = World()
    principal = await world.principal()
    miss = await world.gateway.open_stream(principal, ask(), origin("s1"))
    assert miss.cache_status is CacheStatus.MISS
    first = await drain(miss)
    hit = await world.gateway.open_stream(principal, ask(), origin("s2"))
    assert hit.cache_status is CacheStatus.HIT
    replayed = await drain(hit)

    assert text_of(replayed) == text_of(first) == "the answer is forty two"
    assert replayed[-1] == first[-1]
    assert world.backend.stream_calls == 1
    # A replay measures no model latency.
    assert len(world.telemetry.of("first_token")) == 1
    # The non-streaming path reads the same entry.
    outcome = await world.gateway.complete(principal, ask(), origin("c3"))
    assert (outcome.cache_status, outcome.completion.text) == (CacheStatus.HIT, text_of(first))
    usage = await world.usage_of(principal)
    assert (usage.used_tokens, usage.requests, usage.cache_hits) == (10, 3, 2)
    assert [row.cache_status for row in world.logs] == [
        CacheStatus.MISS,
        CacheStatus.HIT,
        CacheStatus.HIT,
    ]


async def test_a_stream_closed_early_is_charged_prompt_plus_tokens_sent() -> None:
    world = World()
    principal = await world.principal()
    session = await world.gateway.open_stream(principal, ask(), origin("s1"))
    received = [await anext(session.events), await anext(session.events)]
    await session.events.aclose()  # type: ignore[attr-defined]

    assert text_of(received) == "the answer"
    assert world.backend.streams_closed == 1
    usage = await world.usage_of(principal)
    assert (usage.used_tokens, usage.reserved_tokens, usage.requests) == (5 + 2, 0, 1)
    [row] = world.logs
    assert (row.status, row.error_code, row.completion_tokens) == (499, "client_closed_request", 2)
    # A partial answer is never cached.
    again = await world.gateway.open_stream(principal, ask(), origin("s2"))
    assert again.cache_status is CacheStatus.MISS
    await drain(again)


async def test_a_stream_closed_before_iterating_still_settles_once() -> None:
    world = World()
    principal = await world.principal()
    session = await world.gateway.open_stream(principal, ask(), origin("s1"))
    await session.events.aclose()  # type: ignore[attr-defined]
    await session.events.aclose()  # type: ignore[attr-defined]
    usage = await world.usage_of(principal)
    # The first delta was already fetched for the caller when the session opened.
    assert (usage.used_tokens, usage.reserved_tokens, usage.requests) == (5 + 1, 0, 1)
    assert len(world.logs) == 1


async def test_an_abandoned_stream_is_settled_when_collected() -> None:
    world = World()
    principal = await world.principal()
    session: StreamSession | None = await world.gateway.open_stream(principal, ask(), origin("s1"))
    assert session is not None
    await anext(session.events)
    session = None  # the last reference: CPython finalizes the stream right away
    await wait_until(lambda: len(world.logs) == 1)
    usage = await world.usage_of(principal)
    assert (usage.reserved_tokens, usage.requests) == (0, 1)


async def test_cancelling_the_consumer_settles_the_stream() -> None:
    world = World()
    world.backend.gate = asyncio.Event()
    principal = await world.principal()

    async def consume(session: StreamSession) -> None:
        async for _ in session.events:
            pass

    world.backend.gate.set()
    session = await world.gateway.open_stream(principal, ask(), origin("s1"))
    world.backend.gate.clear()
    task = asyncio.create_task(consume(session))
    # The consumer has the first delta and waits inside the backend for the second.
    await wait_until(lambda: world.backend.waits == 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (world.backend.cancelled, world.backend.streams_closed) == (1, 1)
    usage = await world.usage_of(principal)
    assert (usage.used_tokens, usage.reserved_tokens) == (5 + 1, 0)
    assert world.logs[0].status == 499


async def test_a_cached_replay_cut_short_costs_nothing() -> None:
    world = World()
    principal = await world.principal()
    await drain(await world.gateway.open_stream(principal, ask(), origin("s1")))
    hit = await world.gateway.open_stream(principal, ask(), origin("s2"))
    await hit.events.aclose()  # type: ignore[attr-defined]
    usage = await world.usage_of(principal)
    assert (usage.used_tokens, usage.cache_hits, usage.reserved_tokens) == (10, 1, 0)
    assert world.logs[-1].cache_status is CacheStatus.HIT


async def test_a_backend_failure_mid_stream_charges_what_was_sent() -> None:
    world = World()
    world.backend.fail_after = 3
    principal = await world.principal()
    session = await world.gateway.open_stream(principal, ask(), origin("s1"))
    received: list[StreamEvent] = []

    async def consume() -> None:
        async for event in session.events:
            received.append(event)

    with pytest.raises(RuntimeError):
        await consume()

    assert text_of(received) == "the answer is"
    usage = await world.usage_of(principal)
    assert (usage.used_tokens, usage.reserved_tokens) == (5 + 3, 0)
    assert world.telemetry.of("backend_error") == [(MODEL, "RuntimeError")]
    [row] = world.logs
    assert (row.status, row.error_code, row.completion_tokens) == (500, "RuntimeError", 3)


async def test_a_backend_failure_before_the_first_token_is_raised_by_open_stream() -> None:
    world = World()
    world.backend.fail_after = 0
    world.backend.stream_error = UpstreamError("upstream said 500", upstream_status=500)
    principal = await world.principal()
    with pytest.raises(UpstreamError):
        await world.gateway.open_stream(principal, ask(), origin("s1"))
    usage = await world.usage_of(principal)
    assert (usage.used_tokens, usage.reserved_tokens, usage.requests) == (0, 0, 0)
    assert world.telemetry.of("backend_error") == [(MODEL, "upstream_error")]
    assert (world.logs[0].status, world.logs[0].stream, world.logs[0].prompt_tokens) == (
        502,
        True,
        0,
    )


async def test_a_full_queue_refuses_the_stream_before_any_byte() -> None:
    world = World()
    world.backend.error = Overloaded("queue full")
    principal = await world.principal()
    with pytest.raises(Overloaded):
        await world.gateway.open_stream(principal, ask(), origin("s1"))
    assert (await world.usage_of(principal)).reserved_tokens == 0
    assert world.telemetry.of("refused") == [("queue_full",)]
    assert world.logs[0].status == 503


async def test_a_stream_without_a_final_event_is_an_upstream_error() -> None:
    world = World()
    world.backend.send_end = False
    principal = await world.principal()
    session = await world.gateway.open_stream(principal, ask(), origin("s1"))
    with pytest.raises(UpstreamError):
        await drain(session)
    assert (await world.usage_of(principal)).used_tokens == 5 + 5
    assert world.logs[0].status == 502


async def test_stream_refusals_are_logged_once() -> None:
    world = World()
    principal = await world.principal(quota_tokens=5)
    with pytest.raises(QuotaExceeded):
        await world.gateway.open_stream(principal, ask(), origin("s1"))
    [row] = world.logs
    assert (row.status, row.stream, row.error_code) == (429, True, "insufficient_quota")
    assert world.backend.stream_calls == 0
