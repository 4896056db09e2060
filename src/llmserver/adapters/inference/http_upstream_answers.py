"""What the HTTP backend reads of an OpenAI-compatible upstream's answer.

An answer comes as server-sent events, each a chunk, or as one JSON body; both have the
same shape (``delta`` in a stream's choices, ``message`` in a whole chat answer, ``text``
in completions), so one schema reads both. Fields we do not read are skipped unchecked; a
field we read that has the wrong type, a count out of range or text that is not Unicode
makes the whole answer malformed: an ``UpstreamError`` (a 502) saying what, never an
exception of the parser's.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

import msgspec

from llmserver.adapters.inference.http_upstream_client import TRANSPORT_ERRORS, UpstreamResponse
from llmserver.domain.errors import UpstreamError
from llmserver.domain.inference import FinishReason, Logprobs, TokenLogprob, TopLogprob

_Tokens = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
"""A token count: request_logs keeps them as 32-bit INTEGERs."""


class FunctionPart(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class ToolCallPart(msgspec.Struct):
    """A whole call (in a message) or a piece of one (in a stream's delta)."""

    index: Annotated[int, msgspec.Meta(ge=0, le=127)] | None = None
    id: str | None = None
    function: FunctionPart | None = None


class _Content(msgspec.Struct):
    content: str | None = None
    tool_calls: list[ToolCallPart] | None = None


_Bytes = list[Annotated[int, msgspec.Meta(ge=0, le=255)]]


class _Top(msgspec.Struct):
    token: str
    logprob: float
    bytes: _Bytes | None = None

    def top(self) -> TopLogprob:
        return TopLogprob(self.token, self.logprob, _odd_bytes(self.token, self.bytes))


class _Entry(_Top):
    top_logprobs: list[_Top] | None = None


class _Logprobs(msgspec.Struct):
    """Chat's ``content`` entries, or a text completion's parallel lists."""

    content: list[_Entry] | None = None
    tokens: list[str] | None = None
    token_logprobs: list[float | None] | None = None
    top_logprobs: list[dict[str, float] | None] | None = None

    def entries(self) -> Logprobs:
        if self.content is not None:
            return tuple(
                TokenLogprob(
                    e.token,
                    e.logprob,
                    tuple(t.top() for t in e.top_logprobs or ()),
                    _odd_bytes(e.token, e.bytes),
                )
                for e in self.content
            )
        entries = []
        values, tops = self.token_logprobs or [], self.top_logprobs or []
        for i, token in enumerate(self.tokens or ()):
            # A prompt's first token has none (echo); a generated token always has one.
            value = values[i] if i < len(values) else None
            ranked = sorted(((tops[i] if i < len(tops) else None) or {}).items(), key=_likeliest)
            entries.append(
                TokenLogprob(
                    token,
                    0.0 if value is None else value,
                    tuple(TopLogprob(t, lp) for t, lp in ranked),
                )
            )
        return tuple(entries)


def _likeliest(item: tuple[str, float]) -> float:
    return -item[1]


def _odd_bytes(token: str, raw: list[int] | None) -> tuple[int, ...] | None:
    """The upstream's bytes of a token, kept only where they are not its text's UTF-8."""
    if raw is None or bytes(raw) == token.encode():
        return None
    return tuple(raw)


class AnswerChoice(msgspec.Struct):
    delta: _Content | None = None  # a chat stream's chunk
    message: _Content | None = None  # a whole chat answer
    text: str | None = None  # completions
    finish_reason: str | None = None
    index: Annotated[int, msgspec.Meta(ge=0, le=1023)] = 0
    logprobs: _Logprobs | None = None

    @property
    def content(self) -> str | None:
        holder = self.delta if self.delta is not None else self.message
        return holder.content if holder is not None else self.text

    @property
    def tool_calls(self) -> list[ToolCallPart]:
        holder = self.delta if self.delta is not None else self.message
        return (holder.tool_calls or []) if holder is not None else []


class _PromptDetails(msgspec.Struct):
    cached_tokens: _Tokens | None = None
    """Prompt tokens the upstream read from its prompt cache (OpenAI's field)."""


class Usage(msgspec.Struct):
    prompt_tokens: _Tokens | None = None
    completion_tokens: _Tokens | None = None
    prompt_tokens_details: _PromptDetails | None = None

    @property
    def cached_tokens(self) -> int:
        details = self.prompt_tokens_details
        return 0 if details is None or details.cached_tokens is None else details.cached_tokens


class _ErrorDetail(msgspec.Struct):
    message: str | None = None


class Answer(msgspec.Struct):
    """A stream's chunk or a whole answer."""

    choices: list[AnswerChoice] | None = None
    usage: Usage | None = None
    error: _ErrorDetail | str | None = None


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail | str | None = None


_ANSWER = msgspec.json.Decoder(Answer)
_ERROR_BODY = msgspec.json.Decoder(_ErrorBody)
_T = TypeVar("_T")


def parse_answer(data: str | bytes, model_id: str, what: str) -> Answer:
    """``data`` read as the OpenAI ``what`` (a stream chunk, a completion); an error the
    upstream reports in it instead is an upstream error with the upstream's message."""
    answer = decode_upstream(_ANSWER, data, model_id, what)
    if answer.error is not None:
        error = answer.error
        message = error.message if isinstance(error, _ErrorDetail) else error
        raise UpstreamError(f"the upstream of model {model_id!r} failed: {message}")
    return answer


async def error_detail(response: UpstreamResponse, model_id: str) -> str:
    """What an error answer (HTTP 4xx/5xx) says: OpenAI's error message, else its text."""
    try:
        raw = await response.read()
    except TRANSPORT_ERRORS:
        raw = b""
    finally:
        response.close()
    try:
        error = decode_upstream(_ERROR_BODY, raw, model_id, "error body").error
    except UpstreamError:
        error = None  # not OpenAI's shape: its text says what there is to say
    if isinstance(error, _ErrorDetail) and error.message is not None:
        return error.message
    return raw[:200].decode(errors="replace") or "(empty body)"


def decode_upstream(
    decoder: msgspec.json.Decoder[_T], data: str | bytes, model_id: str, what: str
) -> _T:
    """Whatever ``data`` is instead of what ``decoder`` describes (not JSON, another shape,
    a count out of range, nesting deep enough to exhaust the parser's stack) is an
    upstream error, a 502."""
    try:
        return decoder.decode(data)
    except RecursionError:
        reason = "nested too deeply"
    except (msgspec.DecodeError, ValueError) as exc:  # ValueError: not UTF-8
        reason = str(exc)
    shown = data[:200] if isinstance(data, str) else data[:200].decode(errors="replace")
    raise UpstreamError(
        f"the upstream of model {model_id!r} sent a malformed answer, not an OpenAI "
        f"{what} ({reason}): {shown!r}"
    )


class SseEvents:
    """The ``data`` of each server-sent event of a body fed as it arrives (cut anywhere),
    multi-line data joined with newlines. Lines end in CRLF, LF or CR, as the format
    allows; a line has no length limit but the memory it takes.

    A parser fed from the reading loop rather than an async generator of its own: every
    event of a stream passes each generator layer between the socket and the client once,
    and this one took a layer's resumption per event for work that never waits."""

    def __init__(self) -> None:
        self._data: list[bytes] = []
        self._partial: list[bytes] = []  # the start of a line whose end has not arrived
        self._after_cr = False  # the last chunk ended in CR: an LF starting the next ends it

    def feed(self, chunk: bytes) -> list[bytes]:
        """The events that ``chunk`` completes."""
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._after_cr = False
        if b"\n" not in chunk and b"\r" not in chunk:
            self._partial.append(chunk)  # a long line in many chunks is joined once, at its end
            return []
        lines = b"".join([*self._partial, chunk]).splitlines(keepends=True)
        self._after_cr = lines[-1].endswith(b"\r")
        self._partial = [] if lines[-1].endswith((b"\n", b"\r")) else [lines.pop()]
        events: list[bytes] = []
        data = self._data
        for line in lines:
            line = line.rstrip(b"\r\n")
            if line:
                _read_field(line, data)
            elif data:
                events.append(b"\n".join(data))
                data.clear()
        return events

    def end(self) -> list[bytes]:
        """The last event, when the body ended without the blank line that ends it."""
        _read_field(b"".join(self._partial), self._data)
        return [b"\n".join(self._data)] if self._data else []


def _read_field(line: bytes, data: list[bytes]) -> None:
    """Adds to ``data`` the value of a ``data`` line; other fields and comments (a line
    that starts with a colon) say nothing we use."""
    field, _, value = line.partition(b":")
    if field == b"data":
        data.append(value.removeprefix(b" "))


def finish_reason(value: str, *, called: bool = False) -> FinishReason:
    """Ours for the upstream's; an answer with calls ends ``tool_calls`` unless cut short
    (OpenAI says ``stop`` when ``tool_choice`` named the function)."""
    if value == "length":
        return FinishReason.LENGTH
    return FinishReason.TOOL_CALLS if called or value == "tool_calls" else FinishReason.STOP


def choice_logprobs(choice: AnswerChoice, asked: int | None) -> Logprobs | None:
    """A choice's log probabilities as the upstream sent them, when the request ``asked``
    (its ``logprobs``: ``None`` for not)."""
    if asked is None or choice.logprobs is None:
        return None
    return choice.logprobs.entries()
