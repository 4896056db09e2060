"""Reading a local model's tool calls out of its text, piece by piece as it streams."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmserver.adapters.inference.tool_parsing import (
    ToolCallFormat,
    ToolCallParser,
    read_calls,
    template_format,
)
from llmserver.domain.inference import TextDelta
from llmserver.domain.tools import ToolCall, ToolCallDelta, ToolFunction, Tools, merge_deltas

TOOLS = Tools((ToolFunction("get_weather"), ToolFunction("get_time")))
JSON, TAGGED = ToolCallFormat.JSON, ToolCallFormat.TAGGED


def run(
    fmt: ToolCallFormat, pieces: list[str], tools: Tools = TOOLS
) -> tuple[str, tuple[ToolCall, ...], int]:
    """The text, the calls and the tokens the parser gives for ``pieces`` (one token
    each)."""
    counter = itertools.count()
    parser = ToolCallParser(fmt, tools, lambda: f"call_{next(counter)}")
    events = [e for piece in pieces for e in parser.feed(piece, 1)] + parser.end()
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    calls = merge_deltas([e for e in events if isinstance(e, ToolCallDelta)])
    assert parser.called == bool(calls)
    return text, calls, sum(e.tokens for e in events)


def split(text: str, cuts: list[int]) -> list[str]:
    bounds = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


LLAMA_CALL = '{"name": "get_weather", "parameters": {"city": "Paris"}}'
QWEN_CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@given(cuts=st.lists(st.integers(0, 200), max_size=8))
def test_a_llama_call_is_read_however_the_text_is_cut(cuts: list[int]) -> None:
    pieces = split(LLAMA_CALL, cuts)
    text, calls, tokens = run(JSON, pieces)
    assert text == ""
    assert [(c.id, c.name, json.loads(c.arguments)) for c in calls] == [
        ("call_0", "get_weather", {"city": "Paris"})
    ]
    assert tokens == len(pieces)


@given(cuts=st.lists(st.integers(0, 200), max_size=8))
def test_a_qwen_call_between_texts_is_read_however_the_text_is_cut(cuts: list[int]) -> None:
    whole = f"Let me look.\n{QWEN_CALL}\n{QWEN_CALL.replace('Paris', 'Oslo')}\n"
    text, calls, _ = run(TAGGED, split(whole, cuts))
    assert text == "Let me look."  # the whitespace around calls only separates
    assert [json.loads(c.arguments)["city"] for c in calls] == ["Paris", "Oslo"]
    assert [c.id for c in calls] == ["call_0", "call_1"]


@pytest.mark.parametrize(
    "answer",
    [
        f"[{LLAMA_CALL}, {LLAMA_CALL.replace('get_weather', 'get_time')}]",
        f"{LLAMA_CALL}; {LLAMA_CALL.replace('get_weather', 'get_time')}",
    ],
)
def test_several_llama_calls(answer: str) -> None:
    _, calls, _ = run(JSON, [answer])
    assert [c.name for c in calls] == ["get_weather", "get_time"]


def test_parallel_calls_off_keeps_the_first() -> None:
    single = Tools(TOOLS.functions, parallel_calls=False)
    _, calls, _ = run(JSON, [f"[{LLAMA_CALL}, {LLAMA_CALL}]"], single)
    assert len(calls) == 1
    _, calls, _ = run(TAGGED, [QWEN_CALL, QWEN_CALL], single)
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("fmt", "answer"),
    [
        (JSON, "It is sunny."),
        (JSON, '{"name": "launch_rockets", "parameters": {}}'),  # not one of the tools
        (JSON, '{"name": "get_weather", "parameters": [1]}'),  # arguments not an object
        (JSON, '{"name": "get_weather", "parameters": {"city": '),  # cut short
        (JSON, '{"name": "get_weather"} and more words'),
        (TAGGED, "a < b and <tool but not a call."),
        (TAGGED, "<tool_call>not json</tool_call>"),
        (TAGGED, '<tool_call>{"name": "get_weather"'),  # cut short
    ],
)
def test_anything_but_a_call_is_the_text_unchanged(fmt: ToolCallFormat, answer: str) -> None:
    text, calls, _ = run(fmt, [answer[i : i + 3] for i in range(0, len(answer), 3)])
    assert (text, calls) == (answer, ())


def test_text_streams_before_the_answer_ends() -> None:
    parser = ToolCallParser(JSON, TOOLS, lambda: "call")
    assert parser.feed("  ", 1) == []  # undecided: only whitespace so far
    assert parser.feed("Hel", 1) == [TextDelta("  Hel", 2)]
    assert parser.feed("lo", 1) == [TextDelta("lo", 1)]
    tagged = ToolCallParser(TAGGED, TOOLS, lambda: "call")
    assert tagged.feed("Hi <tool", 1) == [TextDelta("Hi", 1)]  # the rest may be a tag
    assert tagged.feed("box", 1) == [TextDelta(" <toolbox", 1)]


def test_arguments_given_as_a_json_string_are_read() -> None:
    calls = read_calls('{"name": "get_time", "arguments": "{\\"tz\\": \\"UTC\\"}"}', {"get_time"})
    assert calls == [("get_time", '{"tz": "UTC"}')]
    assert read_calls('{"name": "get_time"}', {"get_time"}) == [("get_time", "{}")]


def test_the_template_says_the_format() -> None:
    from llmserver.adapters.inference.demo_model import CHAT_TEMPLATE

    assert template_format(CHAT_TEMPLATE) is JSON
    assert template_format("{% for tool in tools %}<tool_call>{% endfor %}") is TAGGED
    assert template_format("{% for m in messages %}{{ m.content }}{% endfor %}") is None
    assert template_format(None) is None
