"""Tool calling: the functions a chat request offers, how the model may use them, and the
calls it makes.

The request's tools travel with its conversation (``Prompt.tools``): a local model sees
them through its chat template, so they decide the prompt's tokens and its cache key as
much as the messages do. A function's parameters are kept as the JSON text the client sent
(its key order included: a template renders them in that order).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, replace
from enum import StrEnum


@dataclass(frozen=True, slots=True)
class ToolFunction:
    """A function the model may call."""

    name: str
    description: str | None = None
    parameters: str | None = None
    """Its arguments' JSON Schema (an object), as JSON text; ``None``: none sent."""
    strict: bool | None = None
    """OpenAI's ``strict`` (calls must follow the schema exactly), passed to an upstream."""


class ToolChoiceMode(StrEnum):
    AUTO = "auto"
    """The model decides whether to call (OpenAI's default when tools are sent)."""
    NONE = "none"
    """No calls: the answer is text."""
    REQUIRED = "required"
    """At least one call."""
    FUNCTION = "function"
    """A call of the named function."""


@dataclass(frozen=True, slots=True)
class Tools:
    """A chat request's tools and how the model may use them."""

    functions: tuple[ToolFunction, ...]
    choice: ToolChoiceMode = ToolChoiceMode.AUTO
    function: str | None = None
    """The function ``choice`` names (``FUNCTION`` only)."""
    parallel_calls: bool | None = None
    """``False``: at most one call; ``None``: as sent (not sent), which allows several."""

    @property
    def calls_allowed(self) -> bool:
        return self.choice is not ToolChoiceMode.NONE


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model made: ``arguments`` is JSON text, as OpenAI sends it."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A streamed piece of the tool call at ``index``: its first piece carries the id and
    the name, every piece a fragment of the arguments' JSON text (empty allowed)."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    tokens: int = 0
    """How many generated tokens this delta covers (for charging cancelled streams)."""
    choice: int = 0
    """The choice whose call it is (only ``n`` > 1 has others than 0)."""


def new_call_id() -> str:
    """An id in OpenAI's form (``call_`` and 24 characters)."""
    return "call_" + secrets.token_hex(12)


def merge_deltas(deltas: list[ToolCallDelta]) -> tuple[ToolCall, ...]:
    """The calls that ``deltas`` (in stream order) build up, by index."""
    ids: dict[int, str] = {}
    names: dict[int, str] = {}
    arguments: dict[int, list[str]] = {}
    for delta in deltas:
        if delta.id is not None:
            ids[delta.index] = delta.id
        if delta.name is not None:
            names[delta.index] = names.get(delta.index, "") + delta.name
        arguments.setdefault(delta.index, []).append(delta.arguments)
    return tuple(
        ToolCall(ids.get(i, ""), names.get(i, ""), "".join(arguments[i])) for i in sorted(arguments)
    )


def as_deltas(calls: tuple[ToolCall, ...], tokens: int = 0, choice: int = 0) -> list[ToolCallDelta]:
    """Whole calls (of choice ``choice``) as stream deltas: each call's id and name, then
    its arguments in one piece; ``tokens`` goes with the last."""
    deltas: list[ToolCallDelta] = []
    for index, call in enumerate(calls):
        deltas.append(ToolCallDelta(index, call.id, call.name, choice=choice))
        deltas.append(ToolCallDelta(index, arguments=call.arguments, choice=choice))
    if deltas and tokens:
        deltas[-1] = replace(deltas[-1], tokens=tokens)
    return deltas


def cache_text(text: str, calls: tuple[ToolCall, ...]) -> str:
    """An answer with tool calls as the one text a cache entry holds (entries whose finish
    reason is ``tool_calls``; see ``from_cache_text``)."""
    return json.dumps(
        {"content": text, "tool_calls": [[c.id, c.name, c.arguments] for c in calls]},
        ensure_ascii=False,
    )


def from_cache_text(stored: str) -> tuple[str, tuple[ToolCall, ...]]:
    """``cache_text``'s text and calls back."""
    data = json.loads(stored)
    return data["content"], tuple(ToolCall(*call) for call in data["tool_calls"])
