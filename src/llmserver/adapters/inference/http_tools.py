"""Tool calling through an OpenAI-compatible upstream: the request's tools, choice and
history passed on as the client sent them, the upstream's calls passed back.

An upstream that leaves out a call's id (some local servers do) gets one of ours, so the
client can answer the call by id as with any other.
"""

from __future__ import annotations

from typing import Any

import msgspec

from llmserver.adapters.inference.http_upstream_answers import ToolCallPart
from llmserver.domain.inference import ChatMessage
from llmserver.domain.tools import ToolCall, ToolCallDelta, ToolChoiceMode, Tools, new_call_id

TOOLS_OVERHEAD_TOKENS = 512
"""Upper bound on what a chat template adds around the tools it renders (Llama 3.1's
instructions are some 100 tokens), for the prompt's bound when the upstream is not asked."""
FUNCTION_OVERHEAD_TOKENS = 32
"""Per function: the ``{"type": "function", "function": ...}`` around it as rendered."""


def tools_bound(tools: Tools) -> int:
    """A bound on the prompt tokens the tools add: their bytes, each function's template
    overhead, and the instructions around them."""
    return TOOLS_OVERHEAD_TOKENS + sum(
        len(f.name)
        + len((f.description or "").encode())
        + len((f.parameters or "").encode())
        + FUNCTION_OVERHEAD_TOKENS
        for f in tools.functions
    )


def upstream_message(message: ChatMessage) -> dict[str, Any]:
    """A history message as the upstream reads it."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["content"] = message.content or None
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def add_tools(body: dict[str, Any], tools: Tools) -> None:
    """The request's tools into the upstream's body; each function's parameters go as the
    JSON text the client sent."""
    definitions = []
    for function in tools.functions:
        described: dict[str, Any] = {"name": function.name}
        if function.description is not None:
            described["description"] = function.description
        if function.parameters is not None:
            described["parameters"] = msgspec.Raw(function.parameters.encode())
        if function.strict is not None:
            described["strict"] = function.strict
        definitions.append({"type": "function", "function": described})
    body["tools"] = definitions
    if tools.choice is ToolChoiceMode.FUNCTION:
        body["tool_choice"] = {"type": "function", "function": {"name": tools.function}}
    else:
        body["tool_choice"] = tools.choice.value
    if tools.parallel_calls is not None:
        body["parallel_tool_calls"] = tools.parallel_calls


def whole_calls(parts: list[ToolCallPart]) -> tuple[ToolCall, ...]:
    """A whole answer's calls."""
    return tuple(
        ToolCall(
            part.id or new_call_id(),
            (part.function.name if part.function else None) or "",
            (part.function.arguments if part.function else None) or "",
        )
        for part in parts
    )


class StreamedCalls:
    """A stream's call pieces as our deltas, each choice's apart: the first piece of each
    call has an id (the upstream's, else ours) and the name."""

    def __init__(self) -> None:
        self._started: set[tuple[int, int]] = set()
        """(choice, call index) of the calls begun."""

    def called(self, choice: int) -> bool:
        return any(c == choice for c, _ in self._started)

    def deltas(self, parts: list[ToolCallPart], choice: int) -> list[ToolCallDelta]:
        out = []
        for position, part in enumerate(parts):
            index = part.index if part.index is not None else position
            function = part.function
            name = function.name if function else None
            arguments = (function.arguments if function else None) or ""
            if (choice, index) not in self._started:
                self._started.add((choice, index))
                call_id = part.id or new_call_id()
                out.append(ToolCallDelta(index, call_id, name or "", arguments, 1, choice))
            else:
                out.append(ToolCallDelta(index, None, name, arguments, 1, choice))
        return out
