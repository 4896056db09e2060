"""Anthropic Messages API request and response bodies as msgspec Structs.

The subset a text model serves: text content blocks in and out. Unknown request fields
are ignored, as Anthropic's API does; wrong types fail decoding with the field's JSON path,
which becomes a 400 ``invalid_request_error`` naming it.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from llmserver.app.routes.openai.protocol import PositiveInt, Probability, TopK

UnitInterval = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class TextBlock(msgspec.Struct, frozen=True):
    """A content block; only ``text`` blocks are served (the type is checked, with a 400
    naming the block, when the body is translated)."""

    type: str
    text: str | None = None


Content = str | list[TextBlock]


class InputMessage(msgspec.Struct, frozen=True):
    role: Literal["user", "assistant"]
    content: Content


class Metadata(msgspec.Struct, frozen=True):
    user_id: str | None = None


class MessagesRequest(msgspec.Struct, frozen=True, kw_only=True):
    model: Annotated[str, msgspec.Meta(min_length=1)]
    messages: Annotated[list[InputMessage], msgspec.Meta(min_length=1)]
    max_tokens: PositiveInt
    system: Content | None = None
    temperature: UnitInterval | None = None
    top_p: Probability | None = None
    top_k: TopK | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    metadata: Metadata | None = None
    cache: bool | None = None
    """Extension: ``false`` bypasses the response cache (like ``Cache-Control: no-cache``)."""


class CountTokensRequest(msgspec.Struct, frozen=True, kw_only=True):
    model: Annotated[str, msgspec.Meta(min_length=1)]
    messages: Annotated[list[InputMessage], msgspec.Meta(min_length=1)]
    system: Content | None = None


class TokenCount(msgspec.Struct, frozen=True):
    input_tokens: int


class OutputText(msgspec.Struct, frozen=True):
    text: str
    type: Literal["text"] = "text"


class Usage(msgspec.Struct, frozen=True):
    input_tokens: int
    output_tokens: int


StopReason = Literal["end_turn", "max_tokens", "stop_sequence"]


class Message(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    model: str
    content: list[OutputText]
    stop_reason: StopReason | None
    usage: Usage
    stop_sequence: str | None = None
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"


class ErrorDetail(msgspec.Struct, frozen=True):
    type: str
    message: str


class ErrorBody(msgspec.Struct, frozen=True):
    error: ErrorDetail
    type: Literal["error"] = "error"


MESSAGES_DECODER = msgspec.json.Decoder(MessagesRequest)
COUNT_TOKENS_DECODER = msgspec.json.Decoder(CountTokensRequest)
