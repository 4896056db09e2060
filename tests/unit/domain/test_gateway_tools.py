"""Answers with tool calls through the use case: streamed, cached, replayed."""

from __future__ import annotations

import pytest

from llmserver.domain.gateway import StreamSession
from llmserver.domain.inference import (
    ChatMessage,
    Completion,
    FinishReason,
    Prompt,
    StreamEnd,
    StreamEvent,
    TextDelta,
)
from llmserver.domain.logs import CacheStatus
from llmserver.domain.tools import (
    ToolCall,
    ToolCallDelta,
    ToolFunction,
    Tools,
    cache_text,
    from_cache_text,
    merge_deltas,
)

from .world import World, ask, origin

CALLS = (
    ToolCall("call_a", "get_weather", '{"city": "Paris"}'),
    ToolCall("call_b", "get_time", "{}"),
)
TOOLS = Tools((ToolFunction("get_weather", None, '{"type": "object"}'), ToolFunction("get_time")))


def with_tools(text: str = "weather?") -> Prompt:
    return Prompt(messages=(ChatMessage("user", text),), tools=TOOLS)


async def drain(session: StreamSession) -> list[StreamEvent]:
    return [event async for event in session.events]


def calls_of(events: list[StreamEvent]) -> tuple[ToolCall, ...]:
    return merge_deltas([e for e in events if isinstance(e, ToolCallDelta)])


@pytest.mark.parametrize("text", ["", 'with "text" and ünïcode'])
def test_an_answer_with_calls_is_one_cache_text_and_back(text: str) -> None:
    assert from_cache_text(cache_text(text, CALLS)) == (text, CALLS)


async def test_streamed_calls_are_cached_and_replay_as_json_and_as_a_stream() -> None:
    world = World()
    world.backend.calls = CALLS
    principal = await world.principal()
    request = ask(prompt=with_tools())
    miss = await world.gateway.open_stream(principal, request, origin("s1"))
    streamed = await drain(miss)
    assert calls_of(streamed) == CALLS
    assert streamed[-1] == StreamEnd(FinishReason.TOOL_CALLS, 1, 5)
    hit = await world.gateway.complete(principal, ask(prompt=with_tools()), origin("r1"))
    assert hit.cache_status is CacheStatus.HIT
    assert hit.completion == Completion(
        text="the answer is forty two",
        prompt_tokens=1,
        completion_tokens=5,
        finish_reason=FinishReason.TOOL_CALLS,
        tool_calls=CALLS,
    )
    replay = await world.gateway.open_stream(principal, ask(prompt=with_tools()), origin("s2"))
    replayed = await drain(replay)
    assert replay.cache_status is CacheStatus.HIT
    assert calls_of(replayed) == CALLS
    assert "".join(e.text for e in replayed if isinstance(e, TextDelta)) == (
        "the answer is forty two"
    )
    assert sum(e.tokens for e in replayed if not isinstance(e, StreamEnd)) == 5
    assert world.backend.stream_calls == 1
    assert world.backend.generate_calls == 0


async def test_the_durable_cache_keeps_the_calls() -> None:
    world = World()
    world.backend.calls = CALLS
    world.backend.reply = ""
    principal = await world.principal()
    await world.gateway.complete(principal, ask(prompt=with_tools()), origin("r1"))
    # A fresh process: only the durable layer holds the answer.
    restarted = World(cache=world.cache, keys=world.keys, usage=world.usage, clock=world.clock)
    again = await restarted.gateway.complete(principal, ask(prompt=with_tools()), origin("r2"))
    assert (again.cache_status, again.completion.tool_calls) == (CacheStatus.HIT, CALLS)
    assert restarted.backend.generate_calls == 0


async def test_the_tools_are_part_of_the_key() -> None:
    world = World()
    principal = await world.principal()
    plain = await world.gateway.complete(principal, ask("weather?"), origin("r1"))
    tooled = await world.gateway.complete(principal, ask(prompt=with_tools()), origin("r2"))
    assert (plain.cache_status, tooled.cache_status) == (CacheStatus.MISS, CacheStatus.MISS)
    assert world.backend.generate_calls == 2
