"""An API surface: one protocol's translation onto the gateway's completion use case.

OpenAI's chat and text completions, Anthropic's Messages and OpenAI's Responses all end in
the same ``Gateway.complete`` / ``Gateway.open_stream``, so keys, model access, RPM, quota,
cache, request logs and metrics are one policy path. What differs between them is only at
the edge, and a ``Surface`` holds exactly that: how a body is decoded and turned into the
domain's request, how an answer, a stream and an error are written back. The completion
lane picks a route's surface once, by path (``app.routes.surfaces.SURFACES``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import msgspec

from llmserver.app.errors import ErrorReply, Where, error_reply
from llmserver.domain.inference import StreamEnd, StreamEvent

if TYPE_CHECKING:
    from llmserver.app.lane.record import AccessRecord
    from llmserver.app.lane.replies import JsonReply
    from llmserver.domain.gateway import CompletionRequest, Outcome, StreamSession


class CompletionBody(Protocol):
    """What the lane reads of every surface's request body."""

    @property
    def model(self) -> str: ...

    @property
    def stream(self) -> bool: ...


B = TypeVar("B", bound=CompletionBody)


@dataclass(frozen=True, slots=True)
class Surface(Generic[B]):
    decoder: msgspec.json.Decoder[B]
    to_domain: Callable[[B, bool], CompletionRequest]
    """The gateway's request for a body; the flag says whether the client allows the cache."""
    answer: Callable[[B, Outcome], msgspec.Struct]
    """A finished completion, in this protocol's response shape."""
    stream: Callable[[StreamSession, B, AccessRecord], AsyncGenerator[bytes, None]]
    """A stream session rendered as this protocol's server-sent events; errors after the
    head go into the stream in this protocol's way. Closing it closes the session."""
    error: Callable[[ErrorReply], JsonReply]
    """An error answer (``app.errors.error_reply``'s mapping) in this protocol's shape."""


AnySurface = Surface[Any]


async def events_or_failure(
    session: StreamSession, record: AccessRecord, route: str
) -> AsyncGenerator[StreamEvent | ErrorReply, None]:
    """The session's events, the token counts noted on the access record at its end; a
    failure part-way ends it with the failure's ``ErrorReply`` (its code on the record, a
    bug's details only in the server's log), for a surface to write as its error event.
    Closing this closes the session."""
    events = session.events
    try:
        async for event in events:
            if isinstance(event, StreamEnd):
                record.prompt_tokens = event.prompt_tokens
                record.completion_tokens = event.completion_tokens
            yield event
    except Exception as exc:
        error = error_reply(exc, Where("POST", route, record.request_id))
        record.error_code = error.body.error.code
        yield error
    finally:
        await events.aclose()  # type: ignore[attr-defined]
