"""Tool calling through a live server with the official openai SDK and langchain-openai.

The server serves the demo model (local, its chat template renders tools) and
``tool-upstream``, an ``http`` model whose upstream is a process of its own
(``tool_upstream.py``) that calls tools the way a real model server does and refuses a
conversation passed on wrongly. The two-turn loop: the model calls a function, the client
runs it and sends the result back, the model answers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam
from pydantic import BaseModel, SecretStr

from livesupport import IssuedKeys, closed_after_test, free_port, running_server

pytestmark = pytest.mark.slow

REMOTE = "tool-upstream"
LOCAL = "demo-tiny-llama"
UPSTREAM = Path(__file__).with_name("tool_upstream.py")

WEATHER: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME: ChatCompletionToolParam = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    port = free_port()
    with subprocess.Popen(
        [sys.executable, str(UPSTREAM), str(port)], stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(10)


@pytest.fixture(scope="module")
def server(
    upstream: str, tmp_path_factory: pytest.TempPathFactory, demo_model_dir: Path
) -> Iterator[tuple[str, IssuedKeys]]:
    root = tmp_path_factory.mktemp("tools")
    models = root / "models.toml"
    models.write_text(
        f'[[models]]\nid = "{REMOTE}"\nbackend = "http"\nsource = "{upstream}"\n'
        "context_length = 8192\n"
    )
    with running_server(root, demo_model_dir, LLMSERVER_MODELS_FILE=str(models)) as live:
        yield live.base_url, live.keys


def client(server: tuple[str, IssuedKeys]) -> OpenAI:
    base, keys = server
    return closed_after_test(
        OpenAI(base_url=base + "/v1", api_key=keys.user, max_retries=0, timeout=60)
    )


def city() -> str:
    return f"Paris-{uuid.uuid4().hex[:8]}"


def test_two_turn_tool_loop(server: tuple[str, IssuedKeys]) -> None:
    sdk = client(server)
    place = city()
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": place}]
    first = sdk.chat.completions.create(
        model=REMOTE, messages=messages, tools=[WEATHER, TIME], temperature=0
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None
    assert len(calls) == 1
    call = calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": place}
    assert call.id.startswith("call_")

    result = f"sunny in {place}"
    messages += [
        choice.message.model_dump(exclude_none=True),  # type: ignore[list-item]
        {"role": "tool", "tool_call_id": call.id, "content": result},
    ]
    second = sdk.chat.completions.create(model=REMOTE, messages=messages, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == f"The weather service says: {result}"
    assert second.choices[0].message.tool_calls is None


def streamed_call(sdk: OpenAI, **request: Any) -> tuple[str, str, str, str | None]:
    """The id, name and arguments of the one call a stream makes, and its finish reason."""
    ids, names, arguments = [], [], []
    finish = None
    with sdk.chat.completions.create(stream=True, **request) as stream:
        for chunk in stream:
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            for piece in delta.tool_calls or ():
                assert piece.index == 0
                if piece.id is not None:
                    ids.append(piece.id)
                    assert piece.function is not None
                    assert piece.function.name
                    names.append(piece.function.name)
                if piece.function is not None and piece.function.arguments:
                    arguments.append(piece.function.arguments)
            finish = chunk.choices[0].finish_reason or finish
    assert len(ids) == 1
    assert len(names) == 1
    return ids[0], names[0], "".join(arguments), finish


def test_two_turn_tool_loop_streamed(server: tuple[str, IssuedKeys]) -> None:
    sdk = client(server)
    place = city()
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": place}]
    call_id, name, arguments, finish = streamed_call(
        sdk,
        model=REMOTE,
        messages=messages,
        tools=[TIME, WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    assert (name, json.loads(arguments), finish) == ("get_weather", {"city": place}, "tool_calls")
    messages += [
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "rain"},
    ]
    text = []
    with sdk.chat.completions.create(
        model=REMOTE, messages=messages, tools=[WEATHER], stream=True
    ) as stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text.append(chunk.choices[0].delta.content)
    assert "".join(text) == "The weather service says: rain"


def test_a_cached_tool_call_replays_as_json_and_as_a_stream(
    server: tuple[str, IssuedKeys],
) -> None:
    sdk = client(server)
    request: dict[str, Any] = {
        "model": REMOTE,
        "messages": [{"role": "user", "content": city()}],
        "tools": [WEATHER],
        "tool_choice": "required",
        "temperature": 0,
    }
    fresh = sdk.chat.completions.with_raw_response.create(**request)
    again = sdk.chat.completions.with_raw_response.create(**request)
    assert (fresh.headers["x-cache"], again.headers["x-cache"]) == ("MISS", "HIT")
    made, replayed = fresh.parse().choices[0], again.parse().choices[0]
    assert replayed.finish_reason == "tool_calls"
    assert replayed.message.tool_calls == made.message.tool_calls
    assert made.message.tool_calls is not None
    call = made.message.tool_calls[0]
    streamed = streamed_call(sdk, **request)
    assert streamed == (call.id, call.function.name, call.function.arguments, "tool_calls")


class GetWeather(BaseModel):
    city: str


def test_the_sdk_s_parse_reads_strict_calls(server: tuple[str, IssuedKeys]) -> None:
    """``pydantic_function_tool`` sends a ``strict`` function; the SDK parses the call's
    arguments into the model."""
    place = city()
    parsed = client(server).chat.completions.parse(
        model=REMOTE,
        messages=[{"role": "user", "content": place}],
        tools=[openai.pydantic_function_tool(GetWeather)],
    )
    (call,) = parsed.choices[0].message.tool_calls or []
    assert call.function.parsed_arguments == GetWeather(city=place)


def test_langchain_bind_tools(server: tuple[str, IssuedKeys]) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city now."""
        return f"windy in {city}"

    base, keys = server
    model = ChatOpenAI(
        base_url=base + "/v1", api_key=SecretStr(keys.user), model=REMOTE, max_retries=0
    ).bind_tools([get_weather])
    place = city()
    history: list[Any] = [HumanMessage(place)]
    asked = model.invoke(history)
    assert [(c["name"], c["args"]) for c in asked.tool_calls] == [("get_weather", {"city": place})]
    call = asked.tool_calls[0]
    history += [asked, ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])]
    assert model.invoke(history).content == f"The weather service says: windy in {place}"


def test_the_demo_model_sees_the_tools_and_answers(server: tuple[str, IssuedKeys]) -> None:
    """A local model renders the tools through its chat template (more prompt tokens), and
    a history with a call and its result."""
    sdk = client(server)
    ask: list[ChatCompletionMessageParam] = [{"role": "user", "content": "weather?"}]
    bare = sdk.chat.completions.create(model=LOCAL, messages=ask, max_tokens=4)
    offered = sdk.chat.completions.create(model=LOCAL, messages=ask, tools=[WEATHER], max_tokens=4)
    assert bare.usage is not None
    assert offered.usage is not None
    assert offered.usage.prompt_tokens > bare.usage.prompt_tokens + 20
    history: list[ChatCompletionMessageParam] = [
        *ask,
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "snow"},
    ]
    after = sdk.chat.completions.create(
        model=LOCAL, messages=history, tools=[WEATHER], tool_choice="none", max_tokens=4
    )
    assert after.choices[0].finish_reason in {"stop", "length"}
    assert after.usage is not None
    assert after.usage.prompt_tokens > offered.usage.prompt_tokens


BAD = [
    ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "retrieval", "function": {"name": "f"}}]}, "tools[0].type"),
    (
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": "object"}}]},
        "tools[0].function.parameters",
    ),
    ({"tools": [WEATHER, WEATHER]}, "tools[1].function.name"),
    (
        {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        "tool_choice",
    ),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
    ({"tools": [WEATHER], "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
    (
        {"messages": [{"role": "tool", "content": "x", "tool_call_id": "call_9"}]},
        "messages[0].tool_call_id",
    ),
    (
        {
            "messages": [
                {
                    "role": "user",
                    "content": "x",
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                }
            ]
        },
        "messages[0].tool_calls",
    ),
    (
        {
            "messages": [
                {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f"}}]}
            ]
        },
        "messages[0].tool_calls[0].function.arguments",
    ),
]


@pytest.mark.parametrize("model", [LOCAL, REMOTE])
@pytest.mark.parametrize(("change", "param"), BAD)
def test_bad_tool_requests_are_400s_naming_the_field(
    server: tuple[str, IssuedKeys], model: str, change: dict[str, Any], param: str
) -> None:
    base, keys = server
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **change}
    reply = httpx.post(
        base + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {keys.user}"},
        timeout=30,
    )
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error
