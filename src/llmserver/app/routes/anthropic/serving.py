"""Translation between Anthropic's Messages API and the gateway's completion use case."""

from __future__ import annotations

from llmserver.app.access_log import new_request_id
from llmserver.app.errors import ErrorReply
from llmserver.app.lane.replies import JsonReply
from llmserver.app.routes.anthropic import protocol as a
from llmserver.app.routes.content import joined_text
from llmserver.app.routes.openai.protocol import ENCODER
from llmserver.app.routes.openai.serving import stop_sequences
from llmserver.domain.errors import Overloaded
from llmserver.domain.gateway import CompletionRequest, Outcome
from llmserver.domain.inference import ChatMessage, FinishReason, Prompt

_TEXT = frozenset({"text"})
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
OVERLOADED = 529
"""Anthropic's status for a full queue, which its SDK raises as ``OverloadedError`` (503,
a store that is down, stays 503: ``ServiceUnavailableError``)."""

STOP_REASONS: dict[FinishReason, a.StopReason] = {
    FinishReason.STOP: "end_turn",
    FinishReason.LENGTH: "max_tokens",
}
"""A stop sequence ends generation as the end of a turn does: the backends report both as
``stop`` (an OpenAI-compatible upstream does not say which), so ``stop_sequence`` is not
told apart."""


def error_type(status: int) -> str:
    """Anthropic's error ``type`` for an answer's status."""
    return _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def status_of(reply: ErrorReply) -> int:
    """``reply``'s status as Anthropic's API would answer it."""
    return OVERLOADED if reply.body.error.code == Overloaded.code else reply.status


def error_body(reply: ErrorReply) -> a.ErrorBody:
    return a.ErrorBody(a.ErrorDetail(error_type(status_of(reply)), reply.body.error.message))


def error_answer(reply: ErrorReply) -> JsonReply:
    """``reply`` in Anthropic's error shape, with its status and headers (``retry-after``
    and the rate-limit headers included)."""
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()]
    return JsonReply(ENCODER.encode(error_body(reply)), headers, status_of(reply))


def _text(content: a.Content, param: str) -> str:
    return joined_text(content, _TEXT, param, "text blocks")


def prompt_of(body: a.MessagesRequest | a.CountTokensRequest) -> Prompt:
    """The conversation as the gateway's prompt: the system text first, as a system
    message, then the turns."""
    turns = [
        ChatMessage(m.role, _text(m.content, f"messages[{i}].content"))
        for i, m in enumerate(body.messages)
    ]
    if body.system is not None:
        system = _text(body.system, "system")
        if system:
            turns.insert(0, ChatMessage("system", system))
    return Prompt(messages=tuple(turns))


def to_domain(body: a.MessagesRequest, use_cache: bool) -> CompletionRequest:
    return CompletionRequest(
        model=body.model,
        prompt=prompt_of(body),
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k or None,
        stop=stop_sequences(body.stop_sequences, "stop_sequences"),
        use_cache=use_cache and body.cache is not False,
    )


def new_message_id() -> str:
    return f"msg_{new_request_id()}"


def answer(body: a.MessagesRequest, outcome: Outcome) -> a.Message:
    c = outcome.completion
    return a.Message(
        id=new_message_id(),
        model=outcome.model.id,
        content=[a.OutputText(c.text)],
        stop_reason=STOP_REASONS[c.finish_reason],
        usage=a.Usage(c.prompt_tokens, c.completion_tokens),
    )
