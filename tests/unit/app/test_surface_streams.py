"""The Messages and Responses streams: their event sequences, and a failure part-way
written as each protocol writes one, a bug's details only in the server's log."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from llmserver.app.lane.record import AccessRecord
from llmserver.app.routes.anthropic import protocol as a
from llmserver.app.routes.anthropic.streaming import message_events
from llmserver.app.routes.responses import protocol as r
from llmserver.app.routes.responses.streaming import response_events
from llmserver.domain.errors import GenerationTimeout
from llmserver.domain.gateway import StreamSession
from llmserver.domain.inference import FinishReason, StreamEnd, StreamEvent, TextDelta
from llmserver.domain.logs import CacheStatus
from llmserver.domain.registry import BackendKind, ModelSpec

SPEC = ModelSpec(id="m", backend=BackendKind.TORCH, source="m")
MESSAGES = a.MessagesRequest(
    model="m", messages=[a.InputMessage("user", "hi")], max_tokens=4, stream=True
)
RESPONSES = r.ResponsesRequest(model="m", input="hi", stream=True)

Renderer = Callable[[StreamSession, Any, AccessRecord], AsyncGenerator[bytes, None]]
SURFACES: dict[str, tuple[Renderer, Any]] = {
    "messages": (message_events, MESSAGES),
    "responses": (response_events, RESPONSES),
}


async def _answer() -> AsyncIterator[StreamEvent]:
    yield TextDelta("Hel")
    yield TextDelta("lo")
    yield StreamEnd(FinishReason.LENGTH, 3, 2)


async def _failing(error: BaseException) -> AsyncIterator[StreamEvent]:
    yield TextDelta("partial")
    raise error


async def _render(
    surface: str, events: AsyncIterator[StreamEvent]
) -> tuple[list[tuple[str, Any]], AccessRecord]:
    render, body = SURFACES[surface]
    session = StreamSession(SPEC, CacheStatus.MISS, None, datetime.now(UTC), events, 3)
    record = AccessRecord("req-1")
    sent = b"".join([chunk async for chunk in render(session, body, record)])
    parsed = []
    for event in sent.split(b"\n\n"):
        if event:
            name, data = event.split(b"\n")
            parsed.append((name.removeprefix(b"event: ").decode(), json.loads(data[6:])))
    return parsed, record


async def test_a_message_stream_is_anthropics_event_sequence() -> None:
    events, record = await _render("messages", _answer())
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    assert events[0][1]["message"]["usage"] == {"input_tokens": 3, "output_tokens": 0}
    assert [d["delta"] for _, d in events[3:5]] == [
        {"type": "text_delta", "text": "Hel"},
        {"type": "text_delta", "text": "lo"},
    ]
    assert events[6][1]["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert events[6][1]["usage"] == {"input_tokens": 3, "output_tokens": 2}
    assert (record.prompt_tokens, record.completion_tokens) == (3, 2)


async def test_a_response_stream_ends_incomplete_when_cut_short() -> None:
    events, _ = await _render("responses", _answer())
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert all(data["type"] == name for name, data in events)
    name, last = events[-1]
    assert name == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert last["response"]["output"][0]["content"][0]["text"] == "Hello"
    assert last["response"]["usage"]["total_tokens"] == 5


@pytest.mark.parametrize("surface", sorted(SURFACES))
async def test_a_bug_ends_the_stream_with_a_generic_error(surface: str) -> None:
    with capture_logs() as logs:
        events, record = await _render(surface, _failing(KeyError("secret internals")))
    assert "secret internals" not in json.dumps(events)
    assert record.error_code == "internal_error"
    [logged] = [entry for entry in logs if entry["event"] == "unhandled_error"]
    assert logged["request_id"] == "req-1"
    if surface == "messages":
        name, error = events[-1]
        assert name == "error"
        assert error["error"]["type"] == "api_error"
    else:
        (error_name, error), (failed_name, failed) = events[-2:]
        assert (error_name, failed_name) == ("error", "response.failed")
        assert error["code"] == "internal_error"
        assert failed["response"]["status"] == "failed"
        assert failed["response"]["error"]["code"] == "internal_error"


@pytest.mark.parametrize("surface", sorted(SURFACES))
async def test_a_gateway_error_says_what_happened(surface: str) -> None:
    events, record = await _render(surface, _failing(GenerationTimeout("took longer than 1s")))
    message = json.dumps(events[-1][1])
    assert "took longer than 1s" in message
    assert record.error_code == GenerationTimeout.code
    if surface == "messages":
        assert events[-1][1]["error"]["type"] == "timeout_error"
