"""Checking a remote model's answer against the JSON schema its request asked for.

An ``http`` model gets ``response_format`` as sent and its server does the constraining.
When the request says ``strict``, the gateway holds the server to it: the answer must
parse as JSON and validate, else the client gets an ``UpstreamError`` (a 502) saying so
rather than text its own parser would fail on. A truncated answer (finish reason
``length``) is not checked: its finish reason already says it is incomplete.

jsonschema-rs: a Rust validator with linear-time regular expressions, so a hostile
``pattern`` cannot stall the thread it runs on; ``offline`` so a ``$ref`` never makes it
fetch a URL on the client's behalf. Validators are built once per schema (a small LRU).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import AsyncGenerator
from typing import Any

import jsonschema_rs
import msgspec

from llmserver.domain.errors import InvalidRequest, UpstreamError
from llmserver.domain.inference import (
    Completion,
    FinishReason,
    StreamEnd,
    StreamEvent,
    TextDelta,
)
from llmserver.domain.output_constraint import OutputConstraint

_SCHEMA_PARAM = "response_format.json_schema.schema"


@functools.lru_cache(maxsize=64)
def _validator(schema: str) -> Any:
    try:
        return jsonschema_rs.validator_for(json.loads(schema), offline=True)
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        first = str(exc).split("\n", 1)[0]
        raise InvalidRequest(
            f"Invalid response_format: the JSON schema is not valid: {first}", param=_SCHEMA_PARAM
        ) from None


def strict_schema(constraint: OutputConstraint | None) -> str | None:
    """The schema an answer must match, checked to be a valid schema (else a 400), or
    ``None`` where the answer is not checked."""
    if constraint is None or not constraint.strict or constraint.schema is None:
        return None
    _validator(constraint.schema)
    return constraint.schema


def check_answer(text: str, schema: str, model_id: str) -> None:
    """Raise ``UpstreamError`` unless ``text`` is JSON that ``schema`` accepts."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        reason = f"it is not JSON ({exc})"
    else:
        errors = _validator(schema).iter_errors(value)
        first = next(errors, None)
        if first is None:
            return
        reason = str(first).split("\n", 1)[0]
    raise UpstreamError(
        f"the upstream of model {model_id!r} answered text that does not match the "
        f"response_format JSON schema (strict): {reason}"
    )


def response_format(constraint: OutputConstraint) -> dict[str, Any]:
    """OpenAI's ``response_format`` for ``constraint``; the schema goes as the client's
    own JSON text (``Raw``), not parsed and encoded again."""
    if constraint.schema is None:
        return {"type": "json_object"}
    spec: dict[str, Any] = {
        "name": constraint.name or "response",
        "schema": msgspec.Raw(constraint.schema.encode()),
        "strict": constraint.strict,
    }
    return {"type": "json_schema", "json_schema": spec}


def check_choices(completion: Completion, schema: str, model_id: str) -> None:
    """``check_answer`` for each choice (of ``n``) that finished."""
    finished = [(completion.text, completion.finish_reason)]
    finished += [(choice.text, choice.finish_reason) for choice in completion.more]
    for text, reason in finished:
        if reason is FinishReason.STOP:
            check_answer(text, schema, model_id)


async def checked_stream(
    events: AsyncGenerator[StreamEvent, None], schema: str, model_id: str
) -> AsyncGenerator[StreamEvent, None]:
    """``events`` with each choice's whole text checked against ``schema`` before the end:
    the text has gone out by then, but the stream ends in an error, not a finish reason
    (and the gateway caches no answer that ends so)."""
    parts: dict[int, list[str]] = {}
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, TextDelta):
                parts.setdefault(event.index, []).append(event.text)
            elif isinstance(event, StreamEnd):
                for index, reason in enumerate((event.finish_reason, *event.more)):
                    if reason is FinishReason.STOP:
                        check_answer("".join(parts.get(index, ())), schema, model_id)
            yield event
