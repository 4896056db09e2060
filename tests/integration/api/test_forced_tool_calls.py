"""``tool_choice`` ``required`` and a named function on a local model: decoding is
constrained to one call of an allowed function whose arguments match its parameters, so
the random-weight demo model, which otherwise answers noise, writes valid calls (the proof
that the constraint, not the model, makes them). Through a live server and the openai SDK.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pytest
from openai import OpenAI
from openai.types.chat import (
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)

from livesupport import LiveServer, closed_after_test, running_server

pytestmark = pytest.mark.slow

MODEL = "demo-tiny-llama"
CITY = {
    "type": "object",
    # Bounded, so that a random model's string ends within max_tokens.
    "properties": {"city": {"type": "string", "maxLength": 12}},
    "required": ["city"],
    "additionalProperties": False,
}
WEATHER: ChatCompletionToolParam = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": CITY},
}
TIME: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {}, "additionalProperties": False},
    },
}
SCHEMAS = {"get_weather": CITY, "get_time": TIME["function"]["parameters"]}
ASK: list[ChatCompletionMessageParam] = [{"role": "user", "content": "weather in Oslo?"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, demo_model_dir: Path) -> Iterator[LiveServer]:
    with running_server(tmp_path_factory.mktemp("forced"), demo_model_dir) as live:
        yield live


def client(server: LiveServer) -> OpenAI:
    return closed_after_test(
        OpenAI(base_url=server.base_url + "/v1", api_key=server.user_key, max_retries=0)
    )


def valid_call(name: str, arguments: str) -> None:
    jsonschema.validate(json.loads(arguments), SCHEMAS[name])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_required_makes_the_demo_model_call_a_tool(server: LiveServer, seed: int) -> None:
    reply = client(server).chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=[WEATHER, TIME],
        tool_choice="required",
        temperature=1,
        seed=seed,
        max_tokens=64,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.function.name in SCHEMAS
    valid_call(call.function.name, call.function.arguments)


def test_a_named_function_is_the_one_called_also_streamed(server: LiveServer) -> None:
    sdk = client(server)
    named: Any = {"type": "function", "function": {"name": "get_weather"}}
    reply = sdk.chat.completions.create(
        model=MODEL, messages=ASK, tools=[TIME, WEATHER], tool_choice=named, max_tokens=64
    )
    (call,) = reply.choices[0].message.tool_calls or []
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.function.name == "get_weather"
    valid_call("get_weather", call.function.arguments)

    names, arguments, finish = [], [], None
    for chunk in sdk.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=[TIME, WEATHER],
        tool_choice=named,
        max_tokens=64,
        temperature=1,
        seed=7,
        stream=True,
    ):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        for part in delta.tool_calls or []:
            assert part.index == 0
            if part.function and part.function.name:
                names.append(part.function.name)
            if part.function and part.function.arguments:
                arguments.append(part.function.arguments)
        finish = chunk.choices[0].finish_reason or finish
    assert names == ["get_weather"]
    assert finish == "tool_calls"
    valid_call("get_weather", "".join(arguments))


def streamed_calls(sdk: OpenAI, ask: dict[str, Any]) -> tuple[str | None, list[list[str]]]:
    """A stream's ``x-cache`` and each choice's call (id, name, arguments, finish
    reason), gathered from its deltas by choice index."""
    raw = sdk.chat.completions.with_raw_response.create(**ask, stream=True)
    calls = [["", "", "", ""], ["", "", "", ""]]
    for chunk in raw.parse():
        for choice in chunk.choices:
            got = calls[choice.index]
            for part in choice.delta.tool_calls or []:
                got[0] = part.id or got[0]
                got[1] += (part.function.name if part.function else None) or ""
                got[2] += (part.function.arguments if part.function else None) or ""
            got[3] = choice.finish_reason or got[3]
    return raw.headers.get("x-cache"), calls


def test_every_choice_of_n_calls_whole_streamed_and_cached(server: LiveServer) -> None:
    """Each choice decodes under a matcher of its own and is read for calls on its own;
    the cache keeps each choice's calls and replays them under its index."""
    sdk = client(server)
    ask: dict[str, Any] = {
        "model": MODEL,
        "messages": ASK,
        "tools": [WEATHER, TIME],
        "tool_choice": "required",
        "max_tokens": 64,
        "temperature": 1,
        "seed": 11,
        "n": 2,
    }
    raw = sdk.chat.completions.with_raw_response.create(**ask)
    assert raw.headers["x-cache"] == "MISS"
    calls = []
    for choice in raw.parse().choices:
        assert choice.finish_reason == "tool_calls", choice
        assert choice.message.content is None
        (call,) = choice.message.tool_calls or []
        assert isinstance(call, ChatCompletionMessageFunctionToolCall)
        valid_call(call.function.name, call.function.arguments)
        calls.append([call.id, call.function.name, call.function.arguments, "tool_calls"])
    assert calls[0][0] != calls[1][0]
    assert streamed_calls(sdk, ask) == ("HIT", calls)  # each choice's calls, cached
    live, fresh = streamed_calls(sdk, {**ask, "extra_body": {"cache": False}})
    assert live == "BYPASS"
    for _, name, arguments, finish in fresh:
        valid_call(name, arguments)
        assert finish == "tool_calls"


def test_a_forced_call_then_its_result_then_an_answer(server: LiveServer) -> None:
    sdk = client(server)
    first = sdk.chat.completions.create(
        model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required", max_tokens=64
    )
    message = first.choices[0].message
    (call,) = message.tool_calls or []
    history: list[ChatCompletionMessageParam] = [
        *ASK,
        message.model_dump(exclude_none=True),  # type: ignore[list-item]
        {"role": "tool", "tool_call_id": call.id, "content": "snow, -3 C"},
    ]
    second = sdk.chat.completions.create(
        model=MODEL, messages=history, tools=[WEATHER], tool_choice="none", max_tokens=8
    )
    assert second.choices[0].message.tool_calls is None
    assert second.choices[0].finish_reason in {"stop", "length"}
    assert second.usage is not None
    assert first.usage is not None
    assert second.usage.prompt_tokens > first.usage.prompt_tokens


def test_a_schema_that_cannot_be_enforced_is_a_400_naming_tools(server: LiveServer) -> None:
    bad: ChatCompletionToolParam = {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {"type": "object", "properties": {"x": {"type": "strin"}}},
        },
    }
    with pytest.raises(openai.BadRequestError) as raised:
        client(server).chat.completions.create(
            model=MODEL, messages=ASK, tools=[bad], tool_choice="required", max_tokens=8
        )
    body = raised.value.body
    assert isinstance(body, dict)
    assert body["param"] == "tools", body
