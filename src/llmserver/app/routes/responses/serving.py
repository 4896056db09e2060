"""Translation between the Responses API and the gateway's completion use case."""

from __future__ import annotations

from datetime import datetime

from llmserver.app.access_log import new_request_id
from llmserver.app.routes.content import joined_text
from llmserver.app.routes.responses import protocol as r
from llmserver.domain.errors import InvalidRequest
from llmserver.domain.gateway import CompletionRequest, Outcome
from llmserver.domain.inference import ChatMessage, Completion, FinishReason, Prompt

_TEXT_PARTS = frozenset({"input_text", "output_text"})


def _text(content: str | list[r.InputContent], index: int) -> str:
    return joined_text(content, _TEXT_PARTS, f"input[{index}].content", "input_text")


def _prompt(body: r.ResponsesRequest) -> Prompt:
    """The instructions first, as a system message, then the input's turns."""
    if isinstance(body.input, str):
        turns = [ChatMessage("user", body.input)]
    else:
        turns = [
            ChatMessage("system" if m.role == "developer" else m.role, _text(m.content, i))
            for i, m in enumerate(body.input)
        ]
    if body.instructions:
        turns.insert(0, ChatMessage("system", body.instructions))
    return Prompt(messages=tuple(turns))


def to_domain(body: r.ResponsesRequest, use_cache: bool) -> CompletionRequest:
    if body.previous_response_id is not None:
        raise InvalidRequest(
            "previous_response_id is not supported: this server stores no responses. "
            "Send the whole conversation in `input` instead.",
            param="previous_response_id",
        )
    return CompletionRequest(
        model=body.model,
        prompt=_prompt(body),
        max_tokens=body.max_output_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        use_cache=use_cache and body.cache is not False,
    )


def new_ids() -> tuple[str, str]:
    """A new response's id and its message's."""
    request_id = new_request_id()
    return f"resp_{request_id}", f"msg_{request_id}"


def response(
    body: r.ResponsesRequest,
    ids: tuple[str, str],
    model: str,
    created: datetime,
    completion: Completion | None,
) -> r.Response:
    """The response object: in progress (no ``completion`` yet) or finished."""
    response_id, message_id = ids
    status: r.Status = "in_progress"
    output: list[r.OutputMessage] = []
    usage = incomplete = None
    if completion is not None:
        truncated = completion.finish_reason is FinishReason.LENGTH
        status = "incomplete" if truncated else "completed"
        incomplete = r.IncompleteDetails("max_output_tokens") if truncated else None
        output = [r.OutputMessage(message_id, status, [r.OutputText(completion.text)])]
        usage = r.Usage(
            completion.prompt_tokens, completion.completion_tokens, completion.total_tokens
        )
    return r.Response(
        id=response_id,
        created_at=int(created.timestamp()),
        model=model,
        status=status,
        output=output,
        usage=usage,
        incomplete_details=incomplete,
        instructions=body.instructions,
        max_output_tokens=body.max_output_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        metadata=body.metadata or {},
    )


def answer(body: r.ResponsesRequest, outcome: Outcome) -> r.Response:
    return response(body, new_ids(), outcome.model.id, outcome.created, outcome.completion)
