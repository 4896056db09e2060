"""Tools on a local model, on the demo model's real tokenizer: rendered through its chat
template, refused by a template that renders none or refuses the conversation, and the
calls read back out of a backend's events."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from llmserver.adapters.inference.local_tools import with_calls
from llmserver.adapters.inference.prompts import OFF_LOOP_CHARS, encode_prompt, prompt_chars
from llmserver.adapters.inference.tool_parsing import ToolCallFormat
from llmserver.domain.errors import InvalidRequest
from llmserver.domain.inference import (
    ChatMessage,
    FinishReason,
    Prompt,
    StreamEnd,
    StreamEvent,
    TextDelta,
)
from llmserver.domain.tools import (
    ToolCall,
    ToolCallDelta,
    ToolChoiceMode,
    ToolFunction,
    Tools,
    merge_deltas,
)

pytestmark = pytest.mark.torch

SCHEMA = '{"type": "object", "properties": {"city": {"type": "string"}}}'
TOOLS = Tools((ToolFunction("get_weather", "The weather now.", SCHEMA),))
ASK = ChatMessage("user", "Weather in Oslo?")
CALLED = ChatMessage("assistant", "", (ToolCall("call_1", "get_weather", '{"city": "Oslo"}'),))
ANSWERED = ChatMessage("tool", "snow", tool_call_id="call_1")


@pytest.fixture(scope="module")
def tokenizer(demo_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(demo_model_dir)


def rendered(tokenizer: Any, prompt: Prompt) -> str:
    text: str = tokenizer.decode(encode_prompt(tokenizer, prompt, "demo"))
    return text


def test_the_demo_template_renders_tools_calls_and_results(tokenizer: Any) -> None:
    text = rendered(tokenizer, Prompt(messages=(ASK, CALLED, ANSWERED), tools=TOOLS))
    function = {
        "name": "get_weather",
        "description": "The weather now.",
        "parameters": json.loads(SCHEMA),
    }
    assert json.dumps({"type": "function", "function": function}) in text
    assert '{"name": "get_weather", "parameters": {"city": "Oslo"}}<|eot_id|>' in text
    assert "<|start_header_id|>ipython<|end_header_id|>\n\nsnow<|eot_id|>" in text
    # Without tools, a conversation renders as it did before the template knew of them.
    assert rendered(tokenizer, Prompt(messages=(ASK,))) == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWeather in Oslo?"
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_a_template_without_tools_refuses_them(tokenizer: Any) -> None:
    plain = copy.copy(tokenizer)
    plain.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(InvalidRequest) as refused:
        encode_prompt(plain, Prompt(messages=(ASK,), tools=TOOLS), "plain")
    assert refused.value.param == "tools"


def test_what_the_template_refuses_is_a_400(tokenizer: Any) -> None:
    single = copy.copy(tokenizer)
    single.chat_template = (
        "{% for m in messages %}"
        "{% if m['tool_calls'] is defined and m['tool_calls'] | length > 1 %}"
        "{{ raise_exception('This model only supports single tool-calls at once!') }}"
        "{% endif %}{{ m['content'] }}{% endfor %}{# tools parameters #}"
    )
    two = ChatMessage("assistant", "", CALLED.tool_calls * 2)
    with pytest.raises(InvalidRequest) as refused:
        encode_prompt(single, Prompt(messages=(ASK, two), tools=TOOLS), "single")
    assert refused.value.param == "messages"
    assert "single tool-calls" in refused.value.message


async def events(
    *pieces: str, finish: FinishReason = FinishReason.STOP
) -> AsyncIterator[StreamEvent]:
    for piece in pieces:
        yield TextDelta(piece)
    yield StreamEnd(finish, 10, len(pieces))


async def drained(stream: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in stream]


async def test_a_backend_s_text_becomes_calls_and_the_end_says_so() -> None:
    prompt = Prompt(messages=(ASK,), tools=TOOLS)
    out = await drained(
        with_calls(
            prompt,
            ToolCallFormat.JSON,
            events('{"name": "get_weather", ', '"parameters": {"city": "Oslo"}}'),
        )
    )
    calls = merge_deltas([e for e in out if isinstance(e, ToolCallDelta)])
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", '{"city": "Oslo"}')]
    assert out[-1] == StreamEnd(FinishReason.TOOL_CALLS, 10, 2)
    # Cut short, a call is still text: the end stays ``length``.
    cut = await drained(
        with_calls(
            prompt, ToolCallFormat.JSON, events('{"name": "get_', finish=FinishReason.LENGTH)
        )
    )
    assert cut == [TextDelta('{"name": "get_', 1), StreamEnd(FinishReason.LENGTH, 10, 1)]


async def test_without_tools_or_with_choice_none_the_events_pass_untouched() -> None:
    stream = events('{"name": "get_weather", "parameters": {}}')
    assert with_calls(Prompt(messages=(ASK,)), ToolCallFormat.JSON, stream) is stream
    none = Tools(TOOLS.functions, ToolChoiceMode.NONE)
    assert with_calls(Prompt(messages=(ASK,), tools=none), ToolCallFormat.JSON, stream) is stream


def test_large_tools_are_tokenized_off_the_event_loop() -> None:
    """Tools render into the prompt: their size decides, as the messages' does, whether
    tokenizing leaves the event loop; the floor counts only what every template keeps."""
    big = Tools((ToolFunction("f", "x" * OFF_LOOP_CHARS, SCHEMA),))
    prompt = Prompt(messages=(ASK,), tools=big)
    assert prompt_chars(prompt) >= OFF_LOOP_CHARS
    assert prompt_chars(prompt, frozenset({"user"})) == len(ASK.content)
