"""A stream session as the Responses API's server-sent events.

``response.created`` and ``response.in_progress``, the message's ``output_item.added`` and
``content_part.added``, an ``output_text.delta`` per piece of text, then the ``.done``
events and ``response.completed`` with the usage (``response.incomplete`` when
``max_output_tokens`` cut it short). A failure after the head is an ``error`` event followed
by ``response.failed``. Every event carries its ``sequence_number``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import msgspec

from llmserver.app import paths
from llmserver.app.errors import ErrorReply
from llmserver.app.lane.record import AccessRecord
from llmserver.app.lane.surface import events_or_failure
from llmserver.app.routes.openai.protocol import ENCODER
from llmserver.app.routes.responses import protocol as r
from llmserver.app.routes.responses.serving import new_ids, response
from llmserver.domain.gateway import StreamSession
from llmserver.domain.inference import Completion, StreamEnd, TextDelta


class _Events:
    """Numbers and writes one stream's events."""

    __slots__ = ("_next", "item")

    def __init__(self, item_id: str) -> None:
        self._next = 0
        self.item = {"item_id": item_id, "output_index": 0, "content_index": 0}

    def __call__(self, kind: str, **fields: Any) -> bytes:
        fields["type"] = kind
        fields["sequence_number"] = self._next
        self._next += 1
        return b"event: %s\ndata: %s\n\n" % (kind.encode(), ENCODER.encode(fields))


def _message(item_id: str, status: r.Status, text: str | None) -> r.OutputMessage:
    return r.OutputMessage(item_id, status, [] if text is None else [r.OutputText(text)])


async def response_events(
    session: StreamSession, body: r.ResponsesRequest, record: AccessRecord
) -> AsyncGenerator[bytes, None]:
    """Render a stream session as the Responses API's events. Closing this closes the
    session."""
    ids = new_ids()
    item_id = ids[1]
    model, created = session.model.id, session.created
    event = _Events(item_id)
    started = response(body, ids, model, created, None)
    yield (
        event("response.created", response=started)
        + event("response.in_progress", response=started)
        + event(
            "response.output_item.added",
            output_index=0,
            item=_message(item_id, "in_progress", None),
        )
        + event("response.content_part.added", **event.item, part=r.OutputText(""))
    )
    pieces: list[str] = []
    async for step in events_or_failure(session, record, paths.RESPONSES):
        if isinstance(step, ErrorReply):
            error = step.body.error
            code = error.code or error.type
            failed = msgspec.structs.replace(
                started, status="failed", error=r.ResponseError(code, error.message)
            )
            yield event("error", code=code, message=error.message, param=error.param)
            yield event("response.failed", response=failed)
        elif isinstance(step, StreamEnd):
            text = "".join(pieces)
            done = Completion(text, step.prompt_tokens, step.completion_tokens, step.finish_reason)
            final = response(body, ids, model, created, done)
            yield (
                event("response.output_text.done", **event.item, text=text, logprobs=[])
                + event("response.content_part.done", **event.item, part=r.OutputText(text))
                + event("response.output_item.done", output_index=0, item=final.output[0])
                + event(f"response.{final.status}", response=final)
            )
        elif isinstance(step, TextDelta) and step.text:
            pieces.append(step.text)
            yield event("response.output_text.delta", **event.item, delta=step.text, logprobs=[])
