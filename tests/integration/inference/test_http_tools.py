"""Tool calling through the HTTP backend: what reaches the upstream, and its calls back,
whole and streamed, from a tool-calling OpenAI-compatible server on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from integration.api import tool_upstream
from integration.inference.fake_upstream import FakeUpstream
from llmserver.adapters.inference.http_backend import HttpBackend
from llmserver.adapters.inference.http_tools import StreamedCalls, whole_calls
from llmserver.adapters.inference.http_upstream_answers import FunctionPart, ToolCallPart
from llmserver.adapters.inference.http_upstream_client import UpstreamClient
from llmserver.domain.inference import (
    ChatMessage,
    FinishReason,
    GenerationParams,
    Prompt,
    StreamEnd,
)
from llmserver.domain.registry import BackendKind, ModelSpec
from llmserver.domain.tools import (
    ToolCall,
    ToolCallDelta,
    ToolChoiceMode,
    ToolFunction,
    Tools,
    merge_deltas,
)

SCHEMA = '{"type":"object","required":["city"],"properties":{"city":{"type":"string"}}}'
TOOLS = Tools(
    (ToolFunction("get_time"), ToolFunction("get_weather", "Weather now.", SCHEMA, strict=True)),
    ToolChoiceMode.FUNCTION,
    "get_weather",
    parallel_calls=False,
)
CALL = ToolCall("call_7", "get_weather", '{"city": "Oslo"}')
HISTORY = (
    ChatMessage("user", "Oslo"),
    ChatMessage("assistant", "", (CALL,)),
    ChatMessage("tool", "snow", tool_call_id="call_7"),
)
PARAMS = GenerationParams(max_tokens=50, temperature=0)


def backend(client: UpstreamClient, url: str) -> HttpBackend:
    spec = ModelSpec(id="remote", backend=BackendKind.HTTP, source=url)
    return HttpBackend(spec, client=client, read_timeout_s=5.0)


async def test_tools_choice_and_the_history_reach_the_upstream_as_sent() -> None:
    upstream = FakeUpstream()
    await upstream.start()
    try:
        async with UpstreamClient() as client:
            await backend(client, upstream.url).generate(
                Prompt(messages=HISTORY, tools=TOOLS), PARAMS
            )
    finally:
        await upstream.stop()
    (seen,) = upstream.seen
    assert seen.body["tools"] == [
        {"type": "function", "function": {"name": "get_time"}},
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather now.",
                "parameters": json.loads(SCHEMA),
                "strict": True,
            },
        },
    ]
    # The schema's keys in the order sent: a template renders them so.
    assert list(seen.body["tools"][1]["function"]["parameters"]) == [
        "type",
        "required",
        "properties",
    ]
    assert seen.body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert seen.body["parallel_tool_calls"] is False
    assert seen.body["messages"] == [
        {"role": "user", "content": "Oslo"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_7",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "content": "snow", "tool_call_id": "call_7"},
    ]


@pytest.fixture
async def calling_upstream() -> AsyncIterator[str]:
    server = await asyncio.start_server(tool_upstream.handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def test_the_upstream_s_calls_come_back_whole_and_streamed(calling_upstream: str) -> None:
    prompt = Prompt(messages=(ChatMessage("user", "Oslo"),), tools=TOOLS)
    async with UpstreamClient() as client:
        remote = backend(client, calling_upstream)
        whole = await remote.generate(prompt, PARAMS)
        streamed = [event async for event in remote.stream(prompt, PARAMS)]
    expected = (ToolCall(tool_upstream.CALL_ID, "get_weather", '{"city": "Oslo"}'),)
    assert (whole.text, whole.tool_calls, whole.finish_reason) == (
        "",
        expected,
        FinishReason.TOOL_CALLS,
    )
    deltas = [e for e in streamed if isinstance(e, ToolCallDelta)]
    assert merge_deltas(deltas) == expected
    assert len(deltas) > 2  # the name, then the arguments in fragments
    assert streamed[-1] == StreamEnd(FinishReason.TOOL_CALLS, 20, 10)


async def test_each_of_n_choices_brings_its_own_calls(calling_upstream: str) -> None:
    prompt = Prompt(messages=(ChatMessage("user", "Oslo"),), tools=TOOLS)
    params = replace(PARAMS, n=2)
    async with UpstreamClient() as client:
        remote = backend(client, calling_upstream)
        whole = await remote.generate(prompt, params)
        streamed = [event async for event in remote.stream(prompt, params)]
    expected = [
        (ToolCall(tool_upstream.CALL_ID + suffix, "get_weather", '{"city": "Oslo"}'),)
        for suffix in ("", "_1")
    ]
    assert [whole.tool_calls, whole.more[0].tool_calls] == expected
    assert [whole.finish_reason, whole.more[0].finish_reason] == [FinishReason.TOOL_CALLS] * 2
    deltas = [e for e in streamed if isinstance(e, ToolCallDelta)]
    assert [merge_deltas([d for d in deltas if d.choice == c]) for c in (0, 1)] == expected
    assert streamed[-1] == StreamEnd(
        FinishReason.TOOL_CALLS, 20, 10, more=(FinishReason.TOOL_CALLS,)
    )


def test_a_call_without_an_id_gets_one_of_ours() -> None:
    parts = [ToolCallPart(index=0, function=FunctionPart("get_time", "{}"))]
    (call,) = whole_calls(parts)
    assert call.id.startswith("call_")
    assert len(call.id) == 29
    calls = StreamedCalls()
    first = calls.deltas([ToolCallPart(index=0, function=FunctionPart("get_time", ""))], 0)
    rest = calls.deltas([ToolCallPart(index=0, function=FunctionPart(arguments="{}"))], 0)
    assert first[0].id is not None
    assert first[0].name == "get_time"
    assert (rest[0].id, rest[0].name, rest[0].arguments) == (None, None, "{}")
    # Another choice's call of the same index is a call of its own, with an id of its own.
    (other,) = calls.deltas([ToolCallPart(index=0, function=FunctionPart("get_time", ""))], 1)
    assert (other.choice, other.name) == (1, "get_time")
    assert other.id not in (None, first[0].id)
    assert calls.called(1)
    assert not calls.called(2)
