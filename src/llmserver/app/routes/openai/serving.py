"""Translation between the OpenAI protocol and the domain's use case."""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from typing import Any

import msgspec
import structlog

from llmserver.app.access_log import new_request_id
from llmserver.app.errors import INTERNAL_ERROR, INTERNAL_ERROR_MESSAGE
from llmserver.app.lane.record import AccessRecord
from llmserver.app.lane.replies import JsonReply
from llmserver.app.lane.surface import Surface
from llmserver.app.routes.content import joined_text
from llmserver.app.routes.openai import protocol as p
from llmserver.app.routes.openai import tools
from llmserver.app.routes.openai.logprobs import TextOffsets, chat_logprobs
from llmserver.domain.errors import GatewayError, InvalidRequest
from llmserver.domain.gateway import CompletionRequest, Outcome, StreamSession
from llmserver.domain.inference import (
    ChatMessage,
    Choice,
    Completion,
    Logprobs,
    Prompt,
    StreamEnd,
    TextDelta,
)
from llmserver.domain.output_constraint import ConstraintKind, OutputConstraint
from llmserver.domain.tools import ToolCallDelta

log = structlog.get_logger("llmserver.errors")

MAX_STOP_SEQUENCES = 4
_PATH = re.compile(r"at `\$\.?([^`]*)`")
_TEXT = frozenset({"text"})
_MISSING = re.compile(r"missing required field `([^`]+)`")


def decode(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    """Decode a request body, turning every failure into a 400 that names the field."""
    if not body.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        text = str(exc)
        path, missing = _PATH.search(text), _MISSING.search(text)
        # A missing field is named in full: its object's path and its own name.
        parts = [found.group(1) for found in (path, missing) if found and found.group(1)]
        param = ".".join(parts) if missing else (parts[0] if parts else None)
        raise InvalidRequest(f"Invalid request body: {text}", param=param) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        # msgspec validates UTF-8 only when it decodes a string, and raises this then.
        raise InvalidRequest(
            f"The request body is not valid UTF-8 (byte {exc.start}); JSON must be UTF-8."
        ) from None
    except RecursionError:
        # msgspec skips an unknown field's value recursively, so nesting there as deep as
        # Python's recursion limit allows (about 1,000 levels, less the stack in use)
        # raises this; a typed field fails validation at its first wrong level instead.
        raise InvalidRequest("The request body's JSON is nested too deeply to decode.") from None


def stop_sequences(stop: p.StopValue | None, param: str = "stop") -> tuple[str, ...]:
    """The request's stop sequences, at most ``MAX_STOP_SEQUENCES`` and none empty."""
    if stop is None:
        return ()
    stops = (stop,) if isinstance(stop, str) else tuple(stop)
    if len(stops) > MAX_STOP_SEQUENCES:
        raise InvalidRequest(
            f"At most {MAX_STOP_SEQUENCES} stop sequences are allowed.", param=param
        )
    if any(not s for s in stops):
        raise InvalidRequest("Stop sequences must not be empty.", param=param)
    return stops


def _message_text(message: p.Message, index: int) -> str:
    content = message.content
    if content is None:
        return ""
    return joined_text(content, _TEXT, f"messages[{index}].content", "text")


Body = p.ChatCompletionRequest | p.CompletionRequest
"""A completion route's request body; its type says which route it came by."""


def _prompt(body: Body) -> tuple[Prompt, int | None]:
    """The prompt and ``max_tokens``, which the two bodies spell differently."""
    if isinstance(body, p.ChatCompletionRequest):
        called: set[str] = set()
        # Each tool field's reading behind a test in line: a plain chat, on every request's
        # path (a cache hit's too), pays no call for tools it does not send.
        messages = tuple(
            ChatMessage(
                role="system" if m.role == "developer" else m.role,
                content=_message_text(m, i),
                tool_calls=tools.message_calls(m, i, called) if m.tool_calls else (),
                tool_call_id=tools.answered_call(m, i, called) if m.role == "tool" else None,
            )
            for i, m in enumerate(body.messages)
        )
        asks_tools = body.tools or body.tool_choice is not None
        chat = Prompt(messages=messages, tools=tools.request_tools(body) if asks_tools else None)
        return chat, body.max_completion_tokens or body.max_tokens
    prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0]
    if not prompt:
        raise InvalidRequest("The prompt is empty; send some text to complete.", param="prompt")
    return Prompt(text=prompt), body.max_tokens


def output_constraint(response_format: p.ResponseFormat | None) -> OutputConstraint | None:
    """The constraint ``response_format`` asks for; ``None`` for free text."""
    if response_format is None or isinstance(response_format, p.ResponseFormatText):
        return None
    if isinstance(response_format, p.ResponseFormatJsonObject):
        return OutputConstraint.json_object()
    spec = response_format.json_schema
    if spec.schema is None:
        return OutputConstraint(
            ConstraintKind.JSON_OBJECT, name=spec.name, strict=bool(spec.strict)
        )
    try:
        return OutputConstraint.json_schema(spec.schema, name=spec.name, strict=bool(spec.strict))
    except ValueError as exc:
        raise InvalidRequest(
            f"Invalid response_format: {exc}.", param="response_format.json_schema.schema"
        ) from None


def _logprobs(body: Body) -> int | None:
    """How many likeliest tokens to report with each token's log probability, or ``None``
    for no log probabilities (chat asks with a flag, a text completion with the count)."""
    if isinstance(body, p.CompletionRequest):
        return body.logprobs
    if body.top_logprobs is not None and not body.logprobs:
        raise InvalidRequest("top_logprobs needs logprobs set to true.", param="top_logprobs")
    return (body.top_logprobs or 0) if body.logprobs else None


def to_domain(body: Body, use_cache: bool) -> CompletionRequest:
    """The use case's request for either body."""
    prompt, max_tokens = _prompt(body)
    return CompletionRequest(
        model=body.model,
        prompt=prompt,
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k or None,
        stop=stop_sequences(body.stop),
        seed=body.seed,
        use_cache=use_cache and body.cache is not False,
        constraint=None
        if body.response_format is None
        else output_constraint(body.response_format),
        logprobs=_logprobs(body),
        n=1 if body.n is None else body.n,
    )


def _usage(prompt_tokens: int, completion_tokens: int) -> p.Usage:
    return p.Usage(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens)


def new_id(kind: str) -> str:
    return f"{kind}-{new_request_id()}"


def answer(body: Body, outcome: Outcome) -> p.ChatCompletion | p.TextCompletion:
    """The answer in the shape of the route ``body`` came by."""
    if isinstance(body, p.ChatCompletionRequest):
        return chat_response(outcome)
    return text_response(outcome)


def _choices(c: Completion) -> list[Choice]:
    return [Choice(c.text, c.finish_reason, c.logprobs, c.tool_calls), *c.more]


def chat_response(outcome: Outcome) -> p.ChatCompletion:
    c = outcome.completion
    return p.ChatCompletion(
        id=new_id("chatcmpl"),
        created=int(outcome.created.timestamp()),
        model=outcome.model.id,
        choices=[
            p.ChatChoice(
                index=i,
                message=p.AssistantMessage(
                    role="assistant",
                    content=choice.text if choice.text or not choice.tool_calls else None,
                    tool_calls=tools.answer_calls(choice.tool_calls)
                    if choice.tool_calls
                    else msgspec.UNSET,
                ),
                # A StrEnum is its value: ``.value`` is a descriptor call per answer.
                finish_reason=choice.finish_reason,
                logprobs=None if choice.logprobs is None else chat_logprobs(choice.logprobs),
            )
            for i, choice in enumerate(_choices(c))
        ],
        usage=_usage(c.prompt_tokens, c.completion_tokens),
    )


def text_response(outcome: Outcome) -> p.TextCompletion:
    c = outcome.completion
    offsets = TextOffsets()
    return p.TextCompletion(
        id=new_id("cmpl"),
        created=int(outcome.created.timestamp()),
        model=outcome.model.id,
        choices=[
            p.TextChoice(
                i, choice.text, choice.finish_reason.value, offsets.logprobs(choice.logprobs, i)
            )
            for i, choice in enumerate(_choices(c))
        ],
        usage=_usage(c.prompt_tokens, c.completion_tokens),
    )


def _sse(payload: msgspec.Struct | dict[str, Any]) -> bytes:
    return b"data: " + p.ENCODER.encode(payload) + b"\n\n"


DONE = b"data: [DONE]\n\n"


def _error_event(message: str, code: str) -> bytes:
    """An error inside a stream whose headers are gone: OpenAI clients read this object."""
    return _sse(
        {"error": {"message": message, "type": "server_error", "param": None, "code": code}}
    )


async def sse_events(
    session: StreamSession, body: Body, record: AccessRecord
) -> AsyncGenerator[bytes, None]:
    """Render a stream session as OpenAI SSE chunks, in the shape of the route ``body`` came
    by. Closing this closes the session."""
    chat = isinstance(body, p.ChatCompletionRequest)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    completion_id = new_id("chatcmpl" if chat else "cmpl")
    created = int(session.created.timestamp())
    model = session.model.id
    offsets = TextOffsets()

    def chunk(
        text: str | None,
        finish: str | None,
        *,
        role: bool = False,
        index: int = 0,
        logprobs: Logprobs | None = None,
    ) -> bytes:
        if chat:
            delta = p.Delta(role="assistant" if role else None, content=text)
            choice = p.ChunkChoice(index, delta, finish, chat_logprobs(logprobs))
            return _sse(p.ChatCompletionChunk(completion_id, created, model, [choice]))
        entry = p.TextChoice(index, text or "", finish, offsets.logprobs(logprobs, index))
        return _sse(p.TextCompletion(completion_id, created, model, [entry]))

    # A chat stream's role chunk (one per choice) goes out with the chunk after it:
    # ``open_stream`` has already fetched the first event, so holding the role chunk back
    # delays nothing, and the first text takes one send (one write to the client's socket)
    # instead of two.
    n = 1 if body.n is None else body.n
    head = b"".join(chunk("", None, role=True, index=i) for i in range(n)) if chat else b""

    def after_head(data: bytes) -> bytes:
        nonlocal head
        data, head = head + data, b""
        return data

    events = session.events
    try:
        async for event in events:
            if isinstance(event, TextDelta):
                if event.text or event.logprobs:
                    text = event.text if event.text or not chat else None
                    yield after_head(chunk(text, None, index=event.index, logprobs=event.logprobs))
            elif isinstance(event, ToolCallDelta):
                delta = p.Delta(tool_calls=tools.delta_calls(event))
                yield after_head(
                    _sse(
                        p.ChatCompletionChunk(
                            completion_id,
                            created,
                            model,
                            [p.ChunkChoice(event.choice, delta, None)],
                        )
                    )
                )
            elif isinstance(event, StreamEnd):
                record.prompt_tokens = event.prompt_tokens
                record.completion_tokens = event.completion_tokens
                ends = b"".join(
                    chunk(None if chat else "", reason.value, index=i)
                    for i, reason in enumerate((event.finish_reason, *event.more))
                )
                yield after_head(ends)
                if include_usage:
                    usage = _usage(event.prompt_tokens, event.completion_tokens)
                    if chat:
                        yield _sse(
                            p.ChatCompletionChunk(completion_id, created, model, [], usage=usage)
                        )
                    else:
                        yield _sse(p.TextCompletion(completion_id, created, model, [], usage=usage))
        yield after_head(DONE)
    except GatewayError as exc:
        record.error_code = exc.code
        yield after_head(_error_event(exc.message, exc.code))
        yield DONE
    except Exception as exc:
        # A bug, not the client's doing: the stream still ends as a stream should, and the
        # client learns no more than a non-streaming 500 tells (the log has the rest).
        log.error(
            "unhandled_error",
            error_type=type(exc).__name__,
            request_id=record.request_id,
            exc_info=exc,
        )
        record.error_code = INTERNAL_ERROR
        yield after_head(_error_event(INTERNAL_ERROR_MESSAGE, INTERNAL_ERROR))
        yield DONE
    finally:
        await events.aclose()  # type: ignore[attr-defined]


CHAT: Surface[p.ChatCompletionRequest] = Surface(
    p.CHAT_DECODER, to_domain, answer, sse_events, JsonReply.error
)
TEXT: Surface[p.CompletionRequest] = Surface(
    p.COMPLETION_DECODER, to_domain, answer, sse_events, JsonReply.error
)
