"""A stream that fails part-way still ends as OpenAI's streams end: an error object in the
stream, then ``[DONE]``; a bug's details stay in the server's log."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from llmserver.app.lane.record import AccessRecord
from llmserver.app.routes.openai import protocol as p
from llmserver.app.routes.openai.serving import Body, sse_events
from llmserver.domain.errors import GenerationTimeout
from llmserver.domain.gateway import StreamSession
from llmserver.domain.inference import FinishReason, StreamEnd, StreamEvent, TextDelta
from llmserver.domain.logs import CacheStatus
from llmserver.domain.registry import BackendKind, ModelSpec

SPEC = ModelSpec(id="m", backend=BackendKind.TORCH, source="m")


async def _failing(error: BaseException) -> AsyncIterator[StreamEvent]:
    yield TextDelta("partial")
    raise error


def _body(*, chat: bool) -> Body:
    usage = p.StreamOptions(include_usage=True)
    if chat:
        message = p.Message(role="user", content="hi")
        return p.ChatCompletionRequest(
            model="m", messages=[message], stream=True, stream_options=usage
        )
    return p.CompletionRequest(model="m", prompt="hi", stream=True, stream_options=usage)


async def _render(error: BaseException, *, chat: bool) -> tuple[list[Any], AccessRecord]:
    session = StreamSession(SPEC, CacheStatus.MISS, None, datetime.now(UTC), _failing(error))
    record = AccessRecord("req-1")
    sent = [chunk async for chunk in sse_events(session, _body(chat=chat), record)]
    # A chunk may carry several events (the role chunk goes with the next).
    datas = [
        event.removeprefix(b"data: ").decode()
        for chunk in sent
        for event in chunk.split(b"\n\n")
        if event
    ]
    return [data if data == "[DONE]" else json.loads(data) for data in datas], record


@pytest.mark.parametrize("chat", [True, False], ids=["chat", "text"])
async def test_a_bug_ends_the_stream_with_a_generic_error_and_done(chat: bool) -> None:
    with capture_logs() as logs:
        events, record = await _render(KeyError("secret internals"), chat=chat)
    *_, error, done = events
    assert done == "[DONE]"
    assert error == {
        "error": {
            "message": "The server had an error while processing your request.",
            "type": "server_error",
            "param": None,
            "code": "internal_error",
        }
    }
    assert "secret internals" not in json.dumps(events)
    assert record.error_code == "internal_error"
    [logged] = [entry for entry in logs if entry["event"] == "unhandled_error"]
    assert logged["error_type"] == "KeyError"
    assert logged["request_id"] == "req-1"
    assert isinstance(logged["exc_info"], KeyError)


async def test_a_gateway_error_says_what_happened() -> None:
    events, record = await _render(GenerationTimeout("took longer than 1s"), chat=True)
    *_, error, done = events
    assert done == "[DONE]"
    assert error["error"]["message"] == "took longer than 1s"
    assert error["error"]["code"] == record.error_code == GenerationTimeout.code


async def test_a_chat_streams_role_chunk_goes_with_its_first_text() -> None:
    """One send before the first text, not two; the events are OpenAI's, in order."""

    async def answer() -> AsyncIterator[StreamEvent]:
        yield TextDelta("Hello")
        yield StreamEnd(FinishReason.STOP, 3, 1)

    session = StreamSession(SPEC, CacheStatus.MISS, None, datetime.now(UTC), answer())
    sent = [c async for c in sse_events(session, _body(chat=True), AccessRecord("req-1"))]
    role, text, rest = sent[0].split(b"\n\n", 2)
    assert json.loads(role.removeprefix(b"data: "))["choices"][0]["delta"]["role"] == "assistant"
    assert json.loads(text.removeprefix(b"data: "))["choices"][0]["delta"]["content"] == "Hello"
    assert rest == b""
    assert sent[-1] == b"data: [DONE]\n\n"
