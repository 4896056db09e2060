"""Tool calling between OpenAI's chat protocol and the domain: the request's tools and
choice, the history's calls and results, and the calls of an answer or a stream.

Checked here, each a 400 naming its field: two tools with one name, a ``tool_choice``
that names no tool (or asks for a call with no tools sent), calls outside an assistant
message, and a ``tool`` message without a ``tool_call_id`` or answering no earlier call.
"""

from __future__ import annotations

import msgspec

from llmserver.app.routes.openai import protocol as p
from llmserver.domain.errors import InvalidRequest
from llmserver.domain.tools import ToolCall, ToolCallDelta, ToolChoiceMode, ToolFunction, Tools

_ENCODER = msgspec.json.Encoder()


def request_tools(body: p.ChatCompletionRequest) -> Tools | None:
    """The request's tools and how the model may use them; ``None`` when none were sent
    (a ``tool_choice`` of ``auto`` or ``none`` then means nothing)."""
    choice = body.tool_choice
    if not body.tools:
        if isinstance(choice, p.NamedToolChoice) or choice == "required":
            raise InvalidRequest(
                "tool_choice asks for a tool call, but the request sends no tools.",
                param="tool_choice",
            )
        return None
    functions: list[ToolFunction] = []
    names: set[str] = set()
    for index, tool in enumerate(body.tools):
        function = tool.function
        if function.name in names:
            raise InvalidRequest(
                f"Two tools are named {function.name!r}; function names must be unique.",
                param=f"tools[{index}].function.name",
            )
        names.add(function.name)
        parameters = None if function.parameters is None else _ENCODER.encode(function.parameters)
        functions.append(
            ToolFunction(
                function.name,
                function.description,
                None if parameters is None else parameters.decode(),
                function.strict,
            )
        )
    if isinstance(choice, p.NamedToolChoice):
        if choice.function.name not in names:
            raise InvalidRequest(
                f"tool_choice names the function {choice.function.name!r}, which is not "
                "among the request's tools.",
                param="tool_choice",
            )
        mode, named = ToolChoiceMode.FUNCTION, choice.function.name
    else:
        mode, named = ToolChoiceMode(choice or "auto"), None
    return Tools(tuple(functions), mode, named, body.parallel_tool_calls)


def message_calls(message: p.Message, index: int, earlier: set[str]) -> tuple[ToolCall, ...]:
    """An assistant message's calls (their ids added to ``earlier``); a 400 for calls on
    any other message."""
    if not message.tool_calls:
        return ()
    if message.role != "assistant":
        raise InvalidRequest(
            "Only assistant messages carry tool_calls.", param=f"messages[{index}].tool_calls"
        )
    earlier.update(call.id for call in message.tool_calls)
    return tuple(
        ToolCall(call.id, call.function.name, call.function.arguments)
        for call in message.tool_calls
    )


def answered_call(message: p.Message, index: int, earlier: set[str]) -> str | None:
    """A ``tool`` message's ``tool_call_id``, which must name a call made before it."""
    if message.role != "tool":
        return None
    call_id = message.tool_call_id
    if call_id is None:
        raise InvalidRequest(
            "A message with role 'tool' needs the tool_call_id of the call it answers.",
            param=f"messages[{index}].tool_call_id",
        )
    if call_id not in earlier:
        raise InvalidRequest(
            f"The tool message's tool_call_id {call_id!r} answers no tool call of an earlier "
            "assistant message.",
            param=f"messages[{index}].tool_call_id",
        )
    return call_id


def answer_calls(calls: tuple[ToolCall, ...]) -> list[p.ToolCall] | msgspec.UnsetType:
    """An answer's calls in OpenAI's shape, or nothing (the field is left out)."""
    if not calls:
        return msgspec.UNSET
    return [p.ToolCall(c.id, p.CalledFunction(c.name, c.arguments)) for c in calls]


def delta_calls(delta: ToolCallDelta) -> list[p.ToolCallDelta]:
    """A streamed piece of a call in OpenAI's shape: the first (with the id) names the
    function; the rest carry argument fragments."""
    if delta.id is not None:
        return [
            p.ToolCallDelta(
                delta.index,
                p.FunctionDelta(delta.name or "", delta.arguments),
                id=delta.id,
                type="function",
            )
        ]
    return [p.ToolCallDelta(delta.index, p.FunctionDelta(delta.name, delta.arguments))]
