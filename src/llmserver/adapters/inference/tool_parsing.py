"""A local model's tool calls, read out of the text it generates, as it streams.

Two formats, the two that chat templates of open models use (vLLM names their parsers
``llama3_json`` and ``hermes``):

- ``JSON`` (Llama 3.1/3.2, the demo model): the whole answer is a call, ``{"name": ...,
  "parameters": {...}}``, or several (a JSON list, or objects separated by ``;``). An
  answer that starts with ``{`` or ``[`` is held back until it ends, then read; anything
  else streams as text.
- ``TAGGED`` (Hermes, Qwen 2.5): calls are ``<tool_call>{"name": ..., "arguments": {...}}
  </tool_call>`` anywhere in the text; the text around them streams as it comes (whatever
  could be the start of a tag held back); whitespace that only separates calls (before a
  call or at the end) is dropped.

A call counts only if it names one of the request's functions and its arguments are a JSON
object; anything else is the model's text, passed on unchanged. Pure: tested without a
model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from llmserver.domain.inference import TextDelta
from llmserver.domain.tools import ToolCall, ToolCallDelta, Tools, as_deltas

OPEN_TAG = "<tool_call>"
CLOSE_TAG = "</tool_call>"


class ToolCallFormat(StrEnum):
    JSON = "json"
    TAGGED = "tagged"


def template_format(chat_template: str | None) -> ToolCallFormat | None:
    """The tool-call format a chat template teaches its model, or ``None`` when it renders
    no tools."""
    if not chat_template or "tools" not in chat_template:
        return None
    if OPEN_TAG in chat_template:
        return ToolCallFormat.TAGGED
    if "parameters" in chat_template:
        return ToolCallFormat.JSON
    return None


Event = TextDelta | ToolCallDelta


class ToolCallParser:
    """Generated text in, text and call deltas out. ``feed`` each piece with the tokens it
    covers, then ``end``; ``called`` says whether any call came out."""

    def __init__(self, fmt: ToolCallFormat, tools: Tools, new_id: Callable[[], str]) -> None:
        self._format = fmt
        self._names = {f.name for f in tools.functions}
        self._single = tools.parallel_calls is False
        self._new_id = new_id
        self._calls = 0
        self._tokens = 0
        self._held = ""
        self._in_call = False
        self._decided = False
        """JSON: whether the answer's first character has come (a call or text)."""
        self._whitespace = ""

    @property
    def called(self) -> bool:
        return self._calls > 0

    def feed(self, text: str, tokens: int) -> list[Event]:
        self._tokens += tokens
        if self._format is ToolCallFormat.JSON:
            return self._feed_json(text)
        return self._feed_tagged(text)

    def end(self) -> list[Event]:
        held, self._held = self._held, ""
        if self._format is ToolCallFormat.JSON or not self._in_call:
            calls = read_calls(held, self._names) if self._format is ToolCallFormat.JSON else None
            return self._calls_or_text(calls, held)
        return self._calls_or_text(read_calls(held, self._names), OPEN_TAG + held)

    # -- JSON ------------------------------------------------------------------------

    def _feed_json(self, text: str) -> list[Event]:
        if self._decided and not self._in_call:
            return self._text(text)
        self._held += text
        if self._decided:
            return []
        start = self._held.lstrip()
        if not start:
            return []
        self._decided = True
        self._in_call = start[0] in "{["
        if self._in_call:
            return []
        held, self._held = self._held, ""
        return self._text(held)

    # -- tagged ----------------------------------------------------------------------

    def _feed_tagged(self, text: str) -> list[Event]:
        self._held += text
        out: list[Event] = []
        while True:
            if self._in_call:
                close = self._held.find(CLOSE_TAG)
                if close < 0:
                    return out
                body = self._held[:close]
                self._held = self._held[close + len(CLOSE_TAG) :]
                self._in_call = False
                raw = OPEN_TAG + body + CLOSE_TAG
                out += self._calls_or_text(read_calls(body, self._names), raw)
                continue
            start = self._held.find(OPEN_TAG)
            if start < 0:
                keep = _partial_tag(self._held)
                ready = self._held[: len(self._held) - keep]
                self._held = self._held[len(ready) :]
                return out + self._text(ready)
            out += self._text(self._held[:start])
            self._held = self._held[start + len(OPEN_TAG) :]
            self._in_call = True

    # -- both ------------------------------------------------------------------------

    def _calls_or_text(self, calls: list[tuple[str, str]] | None, raw: str) -> list[Event]:
        if calls is None:
            return self._text(raw)
        if self._single:
            calls = calls[: max(0, 1 - self._calls)]
        made = tuple(ToolCall(self._new_id(), name, arguments) for name, arguments in calls)
        deltas: list[Event] = [
            ToolCallDelta(d.index + self._calls, d.id, d.name, d.arguments) for d in as_deltas(made)
        ]
        self._calls += len(made)
        return self._with_tokens(deltas)

    def _text(self, text: str) -> list[Event]:
        """Text to pass on; in the tagged format whitespace at its end waits for more
        text, and goes nowhere if a call or the end comes first (it only separates)."""
        if self._format is ToolCallFormat.TAGGED:
            body = text.rstrip()
            if not body:
                self._whitespace += text
                return []
            text, self._whitespace = self._whitespace + body, text[len(body) :]
        return self._with_tokens([TextDelta(text, 0)]) if text else []

    def _with_tokens(self, events: list[Event]) -> list[Event]:
        """The tokens fed since the last event went out ride on the first of ``events``."""
        if not events or not self._tokens:
            return events
        first = events[0]
        if isinstance(first, TextDelta):
            events[0] = TextDelta(first.text, self._tokens)
        else:
            events[0] = ToolCallDelta(
                first.index, first.id, first.name, first.arguments, self._tokens
            )
        self._tokens = 0
        return events


def _partial_tag(text: str) -> int:
    """Length of the longest end of ``text`` that could begin ``OPEN_TAG``."""
    for n in range(min(len(OPEN_TAG) - 1, len(text)), 0, -1):
        if text.endswith(OPEN_TAG[:n]):
            return n
    return 0


_DECODER = json.JSONDecoder()


def read_calls(text: str, names: set[str]) -> list[tuple[str, str]] | None:
    """The ``(name, arguments JSON)`` calls that ``text`` is wholly made of, or ``None``
    when it is anything else: one object, a list of them, or objects separated by ``;``."""
    values: list[Any] = []
    position, text = 0, text.strip()
    while position < len(text):
        try:
            value, position = _DECODER.raw_decode(text, position)
        except ValueError:
            return None
        values.extend(value if isinstance(value, list) else [value])
        while position < len(text) and text[position] in " \t\r\n;,":
            position += 1
    calls = [_call(value, names) for value in values]
    if not calls or any(call is None for call in calls):
        return None
    return [call for call in calls if call is not None]


def _call(value: Any, names: set[str]) -> tuple[str, str] | None:
    if not isinstance(value, dict) or value.get("name") not in names:
        return None
    arguments = value.get("parameters", value.get("arguments", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    return str(value["name"]), json.dumps(arguments, ensure_ascii=False)
