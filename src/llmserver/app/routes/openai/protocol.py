"""OpenAI request and response bodies as msgspec Structs.

Unknown request fields are ignored, as OpenAI does; wrong types fail decoding with the
field's JSON path, which becomes a 400 naming it. Encoders/decoders are built once.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from llmserver.domain.inference import MAX_TOP_LOGPROBS

NonNegative = Annotated[float, msgspec.Meta(ge=0.0, le=2.0)]
Probability = Annotated[float, msgspec.Meta(gt=0.0, le=1.0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
Seed = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
TopK = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
"""Sample from the k likeliest tokens; 0 turns it off, as vLLM reads it."""
StopValue = str | list[Annotated[str, msgspec.Meta(min_length=1)]]
TopLogprobCount = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOP_LOGPROBS)]
"""Chat's ``top_logprobs``: OpenAI's bound."""
TextLogprobCount = Annotated[int, msgspec.Meta(ge=0, le=5)]
"""A text completion's ``logprobs``: OpenAI's bound."""


class ContentPart(msgspec.Struct, frozen=True):
    type: str
    text: str | None = None


FunctionName = Annotated[str, msgspec.Meta(pattern="^[a-zA-Z0-9_-]{1,64}$")]
"""OpenAI's rule for a function's name."""


class CalledFunction(msgspec.Struct, frozen=True):
    name: str
    arguments: str
    """The arguments as JSON text."""


class ToolCall(msgspec.Struct, frozen=True):
    """A call in an assistant message (of the history, or of an answer)."""

    id: str
    function: CalledFunction
    type: Literal["function"] = "function"


class Message(msgspec.Struct, frozen=True):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    """An assistant message's calls."""
    tool_call_id: str | None = None
    """A ``tool`` message's: the call whose result it is."""


class FunctionDefinition(msgspec.Struct, frozen=True):
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    """The arguments' JSON Schema."""
    strict: bool | None = None


class ToolDefinition(msgspec.Struct, frozen=True):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(msgspec.Struct, frozen=True):
    name: str


class NamedToolChoice(msgspec.Struct, frozen=True):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["auto", "none", "required"] | NamedToolChoice


class StreamOptions(msgspec.Struct, frozen=True):
    include_usage: bool = False


class ResponseFormatText(msgspec.Struct, frozen=True, tag_field="type", tag="text"):
    pass


class ResponseFormatJsonObject(msgspec.Struct, frozen=True, tag_field="type", tag="json_object"):
    pass


class JsonSchemaFormat(msgspec.Struct, frozen=True):
    name: Annotated[str, msgspec.Meta(pattern="^[a-zA-Z0-9_-]{1,64}$")]
    """As OpenAI checks it: letters, digits, underscores and dashes, at most 64."""
    schema: dict[str, Any] | None = None
    """``None``: any JSON object (OpenAI's default for an absent schema)."""
    strict: bool | None = None
    description: str | None = None


class ResponseFormatJsonSchema(msgspec.Struct, frozen=True, tag_field="type", tag="json_schema"):
    json_schema: JsonSchemaFormat


ResponseFormat = ResponseFormatText | ResponseFormatJsonObject | ResponseFormatJsonSchema


class _Sampling(msgspec.Struct, frozen=True, kw_only=True):
    model: Annotated[str, msgspec.Meta(min_length=1)]
    max_tokens: PositiveInt | None = None
    temperature: NonNegative | None = None
    top_p: Probability | None = None
    top_k: TopK | None = None
    """Extension (vLLM's): sample from the k likeliest tokens."""
    stop: StopValue | None = None
    seed: Seed | None = None
    user: str | None = None
    n: PositiveInt | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    cache: bool | None = None
    """Extension: ``false`` bypasses the response cache (like ``Cache-Control: no-cache``)."""


class ChatCompletionRequest(_Sampling, frozen=True, kw_only=True):
    messages: Annotated[list[Message], msgspec.Meta(min_length=1)]
    max_completion_tokens: PositiveInt | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: TopLogprobCount | None = None
    """With ``logprobs: true``: also this many of the likeliest tokens at each step."""


class CompletionRequest(_Sampling, frozen=True, kw_only=True):
    prompt: str | Annotated[list[str], msgspec.Meta(min_length=1, max_length=1)]
    logprobs: TextLogprobCount | None = None
    """Each token's log probability and this many of the likeliest tokens at its step."""


class Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(msgspec.Struct, frozen=True):
    role: Literal["assistant"]
    content: str | None
    tool_calls: list[ToolCall] | msgspec.UnsetType = msgspec.UNSET
    """Only in an answer that calls tools (``content`` is then ``null`` unless the model
    also wrote text)."""


class TopLogprob(msgspec.Struct, frozen=True):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(msgspec.Struct, frozen=True):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob]


class ChatLogprobs(msgspec.Struct, frozen=True):
    content: list[TokenLogprob] | None
    refusal: list[TokenLogprob] | None = None


class TextLogprobs(msgspec.Struct, frozen=True):
    """A text completion's log probabilities: parallel lists, one item per token.
    ``top_logprobs`` maps the likeliest tokens (and the one sampled) to theirs;
    ``text_offset`` is where each token starts in the choice's text."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class ChatChoice(msgspec.Struct, frozen=True):
    index: int
    message: AssistantMessage
    finish_reason: str
    logprobs: ChatLogprobs | None = None


class ChatCompletion(msgspec.Struct, frozen=True):
    id: str
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    object: Literal["chat.completion"] = "chat.completion"
    system_fingerprint: str | None = None


class FunctionDelta(msgspec.Struct, frozen=True, omit_defaults=True):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(msgspec.Struct, frozen=True, omit_defaults=True):
    """A streamed piece of a call: the first with ``id``, ``type`` and the name, the
    rest with argument fragments."""

    index: int
    function: FunctionDelta
    id: str | None = None
    type: Literal["function"] | None = None


class Delta(msgspec.Struct, frozen=True, omit_defaults=True):
    role: str | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(msgspec.Struct, frozen=True):
    index: int
    delta: Delta
    finish_reason: str | None
    logprobs: ChatLogprobs | None = None


class ChatCompletionChunk(msgspec.Struct, frozen=True):
    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    usage: Usage | None = None
    system_fingerprint: str | None = None


class TextChoice(msgspec.Struct, frozen=True):
    index: int
    text: str
    finish_reason: str | None
    logprobs: TextLogprobs | None = None


class TextCompletion(msgspec.Struct, frozen=True):
    id: str
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage | None = None
    object: Literal["text_completion"] = "text_completion"
    system_fingerprint: str | None = None


Capability = Literal["chat", "completions", "embeddings"]


class Model(msgspec.Struct, frozen=True):
    id: str
    created: int
    owned_by: str
    capabilities: list[Capability]
    """Extension: the surfaces the model serves, ``chat`` and ``completions`` for a
    generating model (``/v1/chat/completions``, ``/v1/completions``), ``embeddings`` for
    an embedding model (``/v1/embeddings``); the others answer it a 400."""
    object: Literal["model"] = "model"


class ModelList(msgspec.Struct, frozen=True):
    data: list[Model]
    object: Literal["list"] = "list"


CHAT_DECODER = msgspec.json.Decoder(ChatCompletionRequest)
COMPLETION_DECODER = msgspec.json.Decoder(CompletionRequest)
ENCODER = msgspec.json.Encoder()
