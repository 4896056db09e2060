"""A stream session as Anthropic's server-sent events.

``message_start``, ``content_block_start``, ``ping``, then a ``content_block_delta`` per
piece of text, and at the end ``content_block_stop``, ``message_delta`` (the stop reason and
the usage) and ``message_stop``. A failure after the head is an ``error`` event, as the API
sends (the SDKs raise it as the matching error class).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from llmserver.app import paths
from llmserver.app.errors import ErrorReply
from llmserver.app.lane.record import AccessRecord
from llmserver.app.lane.surface import events_or_failure
from llmserver.app.routes.anthropic import protocol as a
from llmserver.app.routes.anthropic.serving import STOP_REASONS, error_body, new_message_id
from llmserver.app.routes.openai.protocol import ENCODER
from llmserver.domain.gateway import StreamSession
from llmserver.domain.inference import StreamEnd, TextDelta


def _event(name: str, payload: dict[str, Any] | a.ErrorBody) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (name.encode(), ENCODER.encode(payload))


_DELTA_HEAD = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":'
)
_CLOSE_BLOCK = _event("content_block_stop", {"type": "content_block_stop", "index": 0})
_STOP = _event("message_stop", {"type": "message_stop"})


def _head(session: StreamSession) -> bytes:
    message = a.Message(
        id=new_message_id(),
        model=session.model.id,
        content=[],
        stop_reason=None,
        usage=a.Usage(session.prompt_tokens, 0),
    )
    block = {"type": "text", "text": ""}
    return (
        _event("message_start", {"type": "message_start", "message": message})
        + _event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": block},
        )
        + _event("ping", {"type": "ping"})
    )


def _end(end: StreamEnd) -> bytes:
    delta = {"stop_reason": STOP_REASONS[end.finish_reason], "stop_sequence": None}
    usage = {"input_tokens": end.prompt_tokens, "output_tokens": end.completion_tokens}
    return (
        _CLOSE_BLOCK
        + _event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        + _STOP
    )


async def message_events(
    session: StreamSession, body: a.MessagesRequest, record: AccessRecord
) -> AsyncGenerator[bytes, None]:
    """Render a stream session as the Messages API's events. Closing this closes the
    session."""
    yield _head(session)
    async for event in events_or_failure(session, record, paths.MESSAGES):
        if isinstance(event, ErrorReply):
            yield _event("error", error_body(event))
        elif isinstance(event, StreamEnd):
            yield _end(event)
        elif isinstance(event, TextDelta) and event.text:
            yield _DELTA_HEAD + ENCODER.encode(event.text) + b"}}\n\n"
