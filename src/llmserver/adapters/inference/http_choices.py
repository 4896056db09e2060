"""An upstream's whole answer read into its choices (each with its calls), and a whole
answer as the events of a stream (an upstream that answers a stream request in one
piece)."""

from __future__ import annotations

from collections.abc import Iterator

from llmserver.adapters.inference.http_tools import whole_calls
from llmserver.adapters.inference.http_upstream_answers import (
    Answer,
    choice_logprobs,
    finish_reason,
)
from llmserver.domain.errors import UpstreamError
from llmserver.domain.inference import (
    Choice,
    Completion,
    GenerationParams,
    StreamEnd,
    StreamEvent,
    TextDelta,
)
from llmserver.domain.tools import as_deltas


def whole_choices(answer: Answer, params: GenerationParams, model_id: str) -> list[Choice]:
    """Each of the ``n`` choices asked for, with its calls (a finish reason each, or an
    upstream error)."""
    found = {c.index: c for c in answer.choices or () if c.index < params.n}
    if len(found) < params.n or any(not c.finish_reason for c in found.values()):
        raise UpstreamError(
            f"the upstream of model {model_id!r} answered without a finish reason"
            + (f" for each of its {params.n} choices" if params.n > 1 else "")
        )
    choices = []
    for i in range(params.n):
        calls = whole_calls(found[i].tool_calls)
        choices.append(
            Choice(
                found[i].content or "",
                finish_reason(found[i].finish_reason or "", called=bool(calls)),
                choice_logprobs(found[i], params.logprobs),
                calls,
            )
        )
    return choices


def whole_events(whole: Completion) -> Iterator[StreamEvent]:
    """``whole`` as a stream's events: each choice's text (the first with every token)
    and calls, the end."""
    head = Choice(whole.text, whole.finish_reason, whole.logprobs, whole.tool_calls)
    for index, each in enumerate((head, *whole.more)):
        if each.text or each.logprobs:
            tokens = whole.completion_tokens if index == 0 else 0
            yield TextDelta(each.text, tokens, index, each.logprobs)
        yield from as_deltas(each.tool_calls, choice=index)
    yield StreamEnd(
        whole.finish_reason,
        whole.prompt_tokens,
        whole.completion_tokens,
        cached_tokens=whole.cached_tokens,
        more=tuple(c.finish_reason for c in whole.more),
    )
