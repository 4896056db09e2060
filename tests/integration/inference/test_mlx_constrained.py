"""Constrained decoding on the MLX backend with the random-weight demo model: the grammars
the torch backend uses, applied by each constrained row's own sampler, so every answer
parses and validates (the constraint, not the model, makes it valid), and free rows that
share the batch answer as they do alone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import jsonschema
import pytest

from integration.inference.pet_schema import PET, PROMPT
from llmserver.domain.errors import InvalidRequest
from llmserver.domain.inference import (
    FinishReason,
    GenerationParams,
    TextDelta,
)
from llmserver.domain.output_constraint import OutputConstraint
from llmserver.domain.registry import BackendKind, ModelSpec
from llmserver.domain.tools import ToolChoiceMode, ToolFunction, Tools

pytest.importorskip("mlx_lm")
pytest.importorskip("llguidance")

from llmserver.adapters.inference.mlx_backend import MlxBackend

pytestmark = pytest.mark.mlx

CITY = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 12}},
    "required": ["city"],
    "additionalProperties": False,
}


@pytest.fixture
async def backend(demo_spec: ModelSpec) -> AsyncIterator[MlxBackend]:
    made = MlxBackend(replace(demo_spec, backend=BackendKind.MLX, max_batch_size=8))
    yield made
    await made.close()


def params(constraint: OutputConstraint | None, **sampling: Any) -> GenerationParams:
    return GenerationParams(constraint=constraint, **{"max_tokens": 300, **sampling})


@pytest.mark.parametrize("temperature", [0.0, 1.0])
async def test_every_schema_answer_parses_and_validates_beside_free_rows(
    backend: MlxBackend, temperature: float
) -> None:
    free = params(None, temperature=0.0, max_tokens=40)
    alone = await backend.generate(PROMPT, free)
    schema = OutputConstraint.json_schema(PET, name="pet", strict=True)
    first, *answers = await asyncio.gather(
        backend.generate(PROMPT, free),
        *(
            backend.generate(PROMPT, params(schema, temperature=temperature, seed=seed))
            for seed in range(6)
        ),
    )
    assert int(backend.status().details["max_rows_per_step"]) > 1  # they shared steps
    assert first.text == alone.text
    for answer in answers:
        assert answer.finish_reason is FinishReason.STOP, answer
        jsonschema.validate(json.loads(answer.text), PET)
    if temperature:
        assert len({a.text for a in answers}) > 1  # sampled, not one forced string


async def test_json_object_starts_an_object_and_ends_one(backend: MlxBackend) -> None:
    """As on torch: a free-form string of random weights may run out of tokens, then the
    answer is a prefix of an object, else one."""
    answers = await asyncio.gather(
        *(
            backend.generate(PROMPT, params(OutputConstraint.json_object(), max_tokens=40, seed=s))
            for s in range(4)
        ),
        backend.generate(PROMPT, params(None, max_tokens=40, seed=9)),
    )
    for answer in answers[:-1]:
        assert answer.text.startswith("{")
        if answer.finish_reason is FinishReason.STOP:
            assert isinstance(json.loads(answer.text), dict)


async def test_a_streamed_answer_validates_and_its_logprobs_are_the_models(
    backend: MlxBackend,
) -> None:
    """Log probabilities are the model's raw ones, not the mask's: the top tokens of a
    step include ones the grammar forbade (random weights rank a brace first rarely)."""
    deltas = [
        event
        async for event in backend.stream(
            PROMPT, params(OutputConstraint.json_schema(PET), seed=3, logprobs=5)
        )
        if isinstance(event, TextDelta)
    ]
    text = "".join(d.text for d in deltas)
    jsonschema.validate(json.loads(text), PET)
    entries = [e for d in deltas for e in d.logprobs or ()]
    assert "".join(e.token for e in entries) == text
    assert all(e.logprob > float("-inf") for e in entries)
    assert any(e.top[0].token != e.token for e in entries)


async def test_a_forced_tool_call_is_well_formed(backend: MlxBackend) -> None:
    # Bounded parameters, so that a random model's call ends within max_tokens.
    none = {"type": "object", "properties": {}, "additionalProperties": False}
    tools = Tools(
        (
            ToolFunction("get_weather", parameters=json.dumps(CITY)),
            ToolFunction("get_time", parameters=json.dumps(none)),
        ),
        choice=ToolChoiceMode.REQUIRED,
    )
    asked = replace(PROMPT, tools=tools)
    answers = await asyncio.gather(
        *(backend.generate(asked, params(None, max_tokens=64, seed=s)) for s in range(4))
    )
    for answer in answers:
        assert answer.finish_reason is FinishReason.TOOL_CALLS, answer
        (call,) = answer.tool_calls
        assert call.id.startswith("call_")
        if call.name == "get_weather":
            jsonschema.validate(json.loads(call.arguments), CITY)
        else:
            assert (call.name, json.loads(call.arguments)) == ("get_time", {})


async def test_a_schema_that_cannot_be_enforced_is_a_400(backend: MlxBackend) -> None:
    bad = OutputConstraint.json_schema({"type": "string", "minLength": 5, "maxLength": 2})
    with pytest.raises(InvalidRequest) as raised:
        await backend.generate(PROMPT, params(bad))
    assert raised.value.param == "response_format"
    assert (await backend.generate(PROMPT, params(None, max_tokens=4))).completion_tokens == 4


async def test_each_constrained_choice_follows_its_own_matcher(backend: MlxBackend) -> None:
    schema = OutputConstraint.json_schema(PET)
    together = await backend.generate(PROMPT, params(schema, temperature=1.0, seed=8, n=3))
    alone = [
        await backend.generate(PROMPT, params(schema, temperature=1.0, seed=8 + i))
        for i in range(3)
    ]
    texts = [together.text, *(c.text for c in together.more)]
    assert texts == [c.text for c in alone]
    for text in texts:
        jsonschema.validate(json.loads(text), PET)


async def test_every_choice_of_a_forced_call_calls(backend: MlxBackend) -> None:
    tools = Tools(
        (ToolFunction("get_weather", parameters=json.dumps(CITY)),), ToolChoiceMode.REQUIRED
    )
    whole = await backend.generate(
        replace(PROMPT, tools=tools), params(None, max_tokens=64, temperature=1.0, seed=2, n=2)
    )
    assert [whole.finish_reason, whole.more[0].finish_reason] == [FinishReason.TOOL_CALLS] * 2
    for calls in (whole.tool_calls, whole.more[0].tool_calls):
        (call,) = calls
        jsonschema.validate(json.loads(call.arguments), CITY)


class _FailsOnItsThirdMask:
    """A row's matcher, except that its third mask fails (as a grammar past its parser's
    limits does part-way)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._masks = 0

    def allowed(self, width: int) -> Any:
        self._masks += 1
        if self._masks == 3:
            raise InvalidRequest("injected grammar failure", param="response_format")
        return self._inner.allowed(width)

    def accept(self, token: int) -> None:
        self._inner.accept(token)


async def test_a_row_whose_grammar_fails_leaves_and_the_others_finish(
    backend: MlxBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The grammar runs inside the generator's shared step: its failure is kept for its
    row, which alone gets the error; the batch goes on."""
    schema = OutputConstraint.json_schema(PET)
    others = [params(None, temperature=0.0, max_tokens=20), params(schema, seed=4)]
    expected = [await backend.generate(PROMPT, p) for p in others]
    poison = params(schema, seed=4, max_tokens=299)
    admit = backend._admit

    def poisoning(gen: Any, jobs: list[Any]) -> None:
        for job in jobs:
            if job.params == poison:
                job.grammar = _FailsOnItsThirdMask(job.grammar)
        admit(gen, jobs)

    monkeypatch.setattr(backend, "_admit", poisoning)
    failed, *rest = await asyncio.gather(
        backend.generate(PROMPT, poison),
        *(backend.generate(PROMPT, p) for p in others),
        return_exceptions=True,
    )
    assert isinstance(failed, InvalidRequest)
    assert str(failed) == "injected grammar failure"
    assert rest == expected
    assert backend.status().details["active"] == "0"
