"""Responses API request and response bodies as msgspec Structs.

The stateless subset: text input (a string or message items with text content), one
assistant message out. Unknown request fields are ignored; wrong types fail decoding with
the field's JSON path, which becomes a 400 naming it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from llmserver.app.routes.openai.protocol import NonNegative, PositiveInt, Probability


class InputContent(msgspec.Struct, frozen=True):
    """A content part; ``input_text`` (and ``output_text`` in an assistant turn) are
    served, checked with a 400 naming the part when the body is translated."""

    type: str
    text: str | None = None


class InputMessage(msgspec.Struct, frozen=True, kw_only=True):
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputContent]
    type: Literal["message"] = "message"


class ResponsesRequest(msgspec.Struct, frozen=True, kw_only=True):
    model: Annotated[str, msgspec.Meta(min_length=1)]
    input: (
        Annotated[str, msgspec.Meta(min_length=1)]
        | Annotated[list[InputMessage], msgspec.Meta(min_length=1)]
    )
    instructions: str | None = None
    max_output_tokens: PositiveInt | None = None
    temperature: NonNegative | None = None
    top_p: Probability | None = None
    stream: bool = False
    store: bool | None = None
    """Accepted and ignored: nothing is stored (``false``'s meaning)."""
    previous_response_id: str | None = None
    """Refused with a 400: without stored responses there is nothing to continue."""
    user: str | None = None
    metadata: dict[str, str] | None = None
    cache: bool | None = None
    """Extension: ``false`` bypasses the response cache (like ``Cache-Control: no-cache``)."""


class OutputText(msgspec.Struct, frozen=True):
    text: str
    type: Literal["output_text"] = "output_text"
    annotations: list[Any] = []


Status = Literal["in_progress", "completed", "incomplete", "failed"]


class OutputMessage(msgspec.Struct, frozen=True):
    id: str
    status: Status
    content: list[OutputText]
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"


class InputTokensDetails(msgspec.Struct, frozen=True):
    cached_tokens: int = 0


class OutputTokensDetails(msgspec.Struct, frozen=True):
    reasoning_tokens: int = 0


class Usage(msgspec.Struct, frozen=True):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: InputTokensDetails = InputTokensDetails()
    output_tokens_details: OutputTokensDetails = OutputTokensDetails()


class IncompleteDetails(msgspec.Struct, frozen=True):
    reason: Literal["max_output_tokens"]


class ResponseError(msgspec.Struct, frozen=True):
    code: str
    message: str


class TextFormat(msgspec.Struct, frozen=True):
    type: Literal["text"] = "text"


class TextConfig(msgspec.Struct, frozen=True):
    format: TextFormat = TextFormat()


class Response(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    created_at: int
    model: str
    status: Status
    output: list[OutputMessage]
    usage: Usage | None = None
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    metadata: dict[str, str] = {}
    object: Literal["response"] = "response"
    parallel_tool_calls: bool = False
    tool_choice: Literal["auto"] = "auto"
    tools: list[Any] = []
    text: TextConfig = TextConfig()
    store: bool = False
    previous_response_id: None = None


RESPONSES_DECODER = msgspec.json.Decoder(ResponsesRequest)
