"""Tool calling on a local model (torch, MLX): the tools and the history's calls rendered
through the model's own chat template, the calls read back out of its answer.

A model whose chat template renders no tools refuses a request with tools (a 400 naming
``tools``), rather than answering as if it had none. With ``tool_choice: none`` the tools
are still rendered (the model knows them, as vLLM does it) but the answer is never read as
calls. With ``required`` or a named function the answer is constrained to be one call
(``forced_call``), so even a model that would answer text (the random demo model) writes a
valid one.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from llmserver.adapters.inference.tool_parsing import ToolCallFormat, ToolCallParser
from llmserver.domain.errors import InvalidRequest
from llmserver.domain.inference import (
    ChatMessage,
    FinishReason,
    Prompt,
    StreamEnd,
    StreamEvent,
    TextDelta,
    close_stream,
)
from llmserver.domain.output_constraint import OutputConstraint
from llmserver.domain.tools import ToolCallDelta, ToolChoiceMode, Tools, new_call_id


def template_messages(messages: tuple[ChatMessage, ...]) -> list[dict[str, Any]]:
    """The conversation as transformers' chat templates read it: a call's arguments as
    an object (templates write them with ``tojson``), a tool result with the name of the
    function it answers."""
    names = {call.id: call.name for m in messages for call in m.tool_calls}
    out: list[dict[str, Any]] = []
    for m in messages:
        message: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": _object(call.arguments)},
                }
                for call in m.tool_calls
            ]
        if m.tool_call_id is not None:
            message["tool_call_id"] = m.tool_call_id
            if m.tool_call_id in names:
                message["name"] = names[m.tool_call_id]
        out.append(message)
    return out


def template_tools(tools: Tools) -> list[dict[str, Any]]:
    """The functions in OpenAI's tool shape, which the templates of Llama 3.1 and Qwen 2.5
    (and the demo model's) render."""
    rendered = []
    for f in tools.functions:
        function: dict[str, Any] = {"name": f.name}
        if f.description is not None:
            function["description"] = f.description
        function["parameters"] = (
            {"type": "object", "properties": {}}
            if f.parameters is None
            else json.loads(f.parameters)
        )
        rendered.append({"type": "function", "function": function})
    return rendered


def _object(arguments: str) -> Any:
    """A call's arguments as an object where they are JSON, else the text as sent."""
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def check_tools(fmt: ToolCallFormat | None, model_id: str) -> ToolCallFormat:
    if fmt is None:
        raise InvalidRequest(
            f"model {model_id!r} cannot take tools: its chat template renders none (tools "
            "need a template in Llama 3.1's JSON or Hermes/Qwen's <tool_call> format).",
            param="tools",
        )
    return fmt


def forced_call(
    tools: Tools | None, fmt: ToolCallFormat | None, constraint: OutputConstraint | None
) -> tuple[OutputConstraint | None, ToolCallFormat | None]:
    """The constraint to decode under and the format to read calls in: when the request
    makes the model call (``required``, or a named function), one call of an allowed
    function as a JSON object, ``{"name": ..., "parameters": {...}}`` (the key Llama's
    templates teach, which the reader takes in either format); else as asked.

    A call replaces ``response_format``: it constrains the text, and a call has none."""
    if tools is None or fmt is None or tools.choice not in _FORCED:
        return constraint, fmt
    named = tools.choice is ToolChoiceMode.FUNCTION
    calls = [
        {
            "type": "object",
            "properties": {
                "name": {"const": f.name},
                "parameters": {"type": "object"}
                if f.parameters is None
                else json.loads(f.parameters),
            },
            "required": ["name", "parameters"],
            "additionalProperties": False,
        }
        for f in tools.functions
        if not named or f.name == tools.function
    ]
    schema = calls[0] if len(calls) == 1 else {"anyOf": calls}
    try:
        forced = OutputConstraint.json_schema(schema, source="tools")
    except ValueError as exc:
        raise InvalidRequest(f"The tools cannot be enforced: {exc}.", param="tools") from None
    return forced, ToolCallFormat.JSON


_FORCED = frozenset({ToolChoiceMode.REQUIRED, ToolChoiceMode.FUNCTION})


def with_calls(
    prompt: Prompt, fmt: ToolCallFormat | None, events: AsyncIterator[StreamEvent]
) -> AsyncIterator[StreamEvent]:
    """``events`` with the calls in the model's text read out as call deltas when the
    request has tools it may call (a choice that called ends ``tool_calls``); else
    ``events`` themselves. Each of ``n`` choices is read on its own."""
    tools = prompt.tools
    if tools is None or not tools.calls_allowed or fmt is None:
        return events
    return _parsed(lambda: ToolCallParser(fmt, tools, new_call_id), events)


async def _parsed(
    new_parser: Callable[[], ToolCallParser], events: AsyncIterator[StreamEvent]
) -> AsyncIterator[StreamEvent]:
    parsers: dict[int, ToolCallParser] = {}
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                parser = parsers.get(event.index)
                if parser is None:
                    parser = parsers[event.index] = new_parser()
                for out in parser.feed(event.text, event.tokens):
                    yield _of_choice(out, event.index)
                if event.logprobs:
                    # The tokens' log probabilities, whatever the parser made of their text.
                    yield TextDelta("", 0, event.index, logprobs=event.logprobs)
            elif isinstance(event, StreamEnd):
                reasons = [event.finish_reason, *event.more]
                for index, parser in sorted(parsers.items()):
                    for out in parser.end():
                        yield _of_choice(out, index)
                    if parser.called and reasons[index] is FinishReason.STOP:
                        reasons[index] = FinishReason.TOOL_CALLS
                yield replace(event, finish_reason=reasons[0], more=tuple(reasons[1:]))
            else:
                yield event
    finally:
        await close_stream(events)


def _of_choice(event: TextDelta | ToolCallDelta, index: int) -> TextDelta | ToolCallDelta:
    """A parser's event (choice 0's, as it knows no other) as choice ``index``'s."""
    if not index:
        return event
    if isinstance(event, TextDelta):
        return replace(event, index=index)
    return replace(event, choice=index)
