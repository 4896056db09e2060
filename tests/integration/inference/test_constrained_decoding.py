"""Constrained decoding on the torch backend with the random-weight demo model: whatever the
weights, the text parses and validates, because the grammar, not the model, decides which
tokens may come next. Free rows batched with constrained ones are untouched."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import pytest

from integration.inference.pet_schema import PET, PROMPT
from llmserver.domain.errors import InvalidRequest
from llmserver.domain.inference import (
    Completion,
    FinishReason,
    GenerationParams,
)
from llmserver.domain.output_constraint import MAX_SCHEMA_CHARS, OutputConstraint
from llmserver.domain.registry import ModelSpec

pytest.importorskip("torch")
pytest.importorskip("llguidance")

from llmserver.adapters.inference.torch_backend import TorchBackend

pytestmark = pytest.mark.torch


@pytest.fixture
async def backend(demo_spec: ModelSpec) -> AsyncIterator[TorchBackend]:
    made = TorchBackend(demo_spec, max_batch_size=8, max_queue=32, request_timeout_s=300.0)
    yield made
    await made.close()


def params(constraint: OutputConstraint | None, **sampling: Any) -> GenerationParams:
    return GenerationParams(constraint=constraint, **{"max_tokens": 300, **sampling})


@pytest.mark.parametrize("temperature", [0.0, 1.0])
async def test_every_answer_parses_and_validates(backend: TorchBackend, temperature: float) -> None:
    schema = OutputConstraint.json_schema(PET, name="pet", strict=True)
    answers = await asyncio.gather(
        *(
            backend.generate(PROMPT, params(schema, temperature=temperature, seed=seed))
            for seed in range(6)
        )
    )
    for answer in answers:
        assert answer.finish_reason is FinishReason.STOP, answer
        jsonschema.validate(json.loads(answer.text), PET)
    if temperature:
        assert len({a.text for a in answers}) > 1  # sampled, not one forced string


async def test_json_object_starts_an_object_and_ends_one(backend: TorchBackend) -> None:
    """Random weights rarely close a free-form string (one token in a thousand is a quote),
    so an answer may run out of tokens: then it is a prefix of an object, else one."""
    answers = await asyncio.gather(
        *(
            backend.generate(PROMPT, params(OutputConstraint.json_object(), max_tokens=40, seed=s))
            for s in range(2)
        )
    )
    for answer in answers:
        assert answer.text.startswith("{")
        if answer.finish_reason is FinishReason.STOP:
            assert isinstance(json.loads(answer.text), dict)


async def test_a_streamed_answer_validates(backend: TorchBackend) -> None:
    constraint = OutputConstraint.json_schema(PET)
    parts = [
        event.text
        async for event in backend.stream(PROMPT, params(constraint, seed=3))
        if hasattr(event, "text")
    ]
    jsonschema.validate(json.loads("".join(parts)), PET)


async def test_a_free_row_batched_with_constrained_ones_is_unchanged(
    backend: TorchBackend,
) -> None:
    free = params(None, temperature=0.0, max_tokens=40)
    alone = await backend.generate(PROMPT, free)
    constrained = OutputConstraint.json_schema(PET)
    together = await asyncio.gather(
        backend.generate(PROMPT, free),
        *(backend.generate(PROMPT, params(constrained, seed=s)) for s in range(3)),
    )
    assert backend.max_rows_per_step >= 2  # they did share steps
    assert together[0].text == alone.text
    for answer in together[1:]:
        jsonschema.validate(json.loads(answer.text), PET)


async def test_a_truncated_answer_says_length(backend: TorchBackend) -> None:
    answer: Completion = await backend.generate(
        PROMPT, params(OutputConstraint.json_schema(PET), max_tokens=3)
    )
    assert answer.finish_reason is FinishReason.LENGTH
    assert answer.completion_tokens == 3
    assert answer.text.startswith("{")  # a prefix of valid JSON; it may not parse


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "strin"},
        {"type": "string", "minLength": 5, "maxLength": 2},
        {"$ref": "http://example.com/schema.json"},
    ],
    ids=["unknown type", "unsatisfiable", "remote ref"],
)
async def test_a_schema_that_cannot_be_enforced_is_a_400(
    backend: TorchBackend, schema: dict[str, Any]
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        await backend.generate(PROMPT, params(OutputConstraint.json_schema(schema)))
    assert raised.value.param == "response_format"
    with pytest.raises(InvalidRequest):  # streamed too, at its first event
        await anext(backend.stream(PROMPT, params(OutputConstraint.json_schema(schema))))


def test_a_schema_past_the_cap_is_refused_before_any_backend() -> None:
    huge = {"enum": ["x" * 1000] * (MAX_SCHEMA_CHARS // 1000 + 1)}
    with pytest.raises(ValueError, match="at most"):
        OutputConstraint.json_schema(huge)


async def test_a_hostile_schema_does_not_hold_up_free_rows(backend: TorchBackend) -> None:
    """A schema with hundreds of alternations of patterns compiles on the grammar thread
    (or fails its limits); a free request meanwhile is answered as usual."""
    hostile = {
        "anyOf": [
            {"type": "string", "pattern": f"^(a|b|c|{i})*x{{{i % 7 + 1},40}}(y|z)+$"}
            for i in range(300)
        ]
    }
    compile_task = asyncio.ensure_future(
        backend.generate(PROMPT, params(OutputConstraint.json_schema(hostile), max_tokens=8))
    )
    free = await backend.generate(PROMPT, params(None, temperature=0.0, max_tokens=8))
    assert free.completion_tokens > 0
    (outcome,) = await asyncio.gather(compile_task, return_exceptions=True)
    refused = isinstance(outcome, InvalidRequest) and outcome.param == "response_format"
    assert refused or isinstance(outcome, Completion), outcome


async def test_a_schema_compiles_once_whatever_names_it(
    backend: TorchBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compiled grammar is cached by the schema alone: another name, strictness or
    source (a forced tool call's arguments) reuses it."""
    grammars = backend._grammars
    compiled: list[str] = []
    compile_schema = grammars._compile

    def counted(schema: str, source: str) -> Any:
        compiled.append(source)
        return compile_schema(schema, source)

    monkeypatch.setattr(grammars, "_compile", counted)
    for constraint in (
        OutputConstraint.json_schema(PET, name="pet", strict=True),
        OutputConstraint.json_schema(PET, name="animal", strict=False),
        OutputConstraint.json_schema(PET, source="tool_choice"),
    ):
        await grammars.compiled(constraint)
    assert compiled == ["response_format"]
