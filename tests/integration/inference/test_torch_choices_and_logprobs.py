"""The torch backend's ``n`` choices (one prefill, the rows copied) and log probabilities,
on the tiny demo model: each choice is exactly what a request of its own would give."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace

import jsonschema
import pytest

from llmserver.domain.errors import InvalidRequest
from llmserver.domain.inference import (
    ChatMessage,
    FinishReason,
    GenerationParams,
    Logprobs,
    Prompt,
    StreamEnd,
    TextDelta,
)
from llmserver.domain.output_constraint import OutputConstraint
from llmserver.domain.registry import ModelSpec
from llmserver.domain.tools import (
    ToolCallDelta,
    ToolChoiceMode,
    ToolFunction,
    Tools,
    merge_deltas,
)

pytest.importorskip("torch")
pytest.importorskip("transformers")

from llmserver.adapters.inference.torch_backend import TorchBackend

pytestmark = pytest.mark.torch

CHAT = Prompt(messages=(ChatMessage("user", "Tell me a long story about the sea"),))


def values(logprobs: Logprobs | None) -> list[object]:
    """Tokens exactly, log probabilities to float32 rounding: rows computed in batches of
    other shapes differ in the last bits."""
    assert logprobs is not None
    return [
        (e.token, pytest.approx(e.logprob, abs=1e-4), [t.token for t in e.top]) for e in logprobs
    ]


@pytest.fixture
async def backend(demo_spec: ModelSpec) -> AsyncIterator[TorchBackend]:
    made = TorchBackend(demo_spec, max_batch_size=4, max_queue=16, request_timeout_s=60.0)
    yield made
    await made.close()


async def test_each_choice_is_the_sample_of_its_own_seed(backend: TorchBackend) -> None:
    """Choice ``i`` of a seeded request equals a request of its own with ``seed + i``: the
    copied cache is the prompt's, and each row samples on its own."""
    params = GenerationParams(max_tokens=24, temperature=1.0, seed=40, n=3, logprobs=2)
    together = await backend.generate(CHAT, params)
    alone = await asyncio.gather(
        *(backend.generate(CHAT, replace(params, n=1, seed=40 + i)) for i in range(3))
    )
    choices = [(together.text, together.logprobs), *((c.text, c.logprobs) for c in together.more)]
    assert [text for text, _ in choices] == [c.text for c in alone]
    for (_, logprobs), own in zip(choices, alone, strict=True):
        assert values(logprobs) == values(own.logprobs)
    assert together.completion_tokens == sum(c.completion_tokens for c in alone)
    assert together.prompt_tokens == alone[0].prompt_tokens
    assert len({text for text, _ in choices}) > 1


async def test_greedy_choices_are_the_greedy_answer(backend: TorchBackend) -> None:
    params = GenerationParams(max_tokens=12, temperature=0.0, n=2, logprobs=0)
    together, alone = await asyncio.gather(
        backend.generate(CHAT, params), backend.generate(CHAT, replace(params, n=1))
    )
    assert together.text == together.more[0].text == alone.text
    assert values(together.logprobs) == values(together.more[0].logprobs)
    assert values(together.logprobs) == values(alone.logprobs)
    assert alone.logprobs is not None
    assert all(entry.logprob <= 0 and entry.top == () for entry in alone.logprobs)


async def test_logprobs_are_the_raw_distribution_whatever_the_temperature(
    backend: TorchBackend,
) -> None:
    """The same text has the same log probabilities at any temperature or top_k: a greedy
    answer replayed by a top_k=1 sample at temperature 1.7 reports the same values."""
    greedy = await backend.generate(
        CHAT, GenerationParams(max_tokens=10, temperature=0.0, logprobs=3)
    )
    sampled = await backend.generate(
        CHAT, GenerationParams(max_tokens=10, temperature=1.7, top_k=1, seed=3, logprobs=3)
    )
    assert sampled.text == greedy.text
    assert greedy.logprobs is not None
    assert sampled.logprobs is not None
    assert [e.logprob for e in sampled.logprobs] == pytest.approx(
        [e.logprob for e in greedy.logprobs], abs=1e-5
    )
    for entry in greedy.logprobs:
        assert entry.top[0].token == entry.token
        assert [t.logprob for t in entry.top] == sorted(
            (t.logprob for t in entry.top), reverse=True
        )


async def test_streamed_choices_carry_their_index(backend: TorchBackend) -> None:
    params = GenerationParams(max_tokens=8, temperature=1.0, seed=9, n=2)
    texts = ["", ""]
    async for event in backend.stream(CHAT, params):
        if isinstance(event, TextDelta):
            texts[event.index] += event.text
        elif isinstance(event, StreamEnd):
            assert len(event.more) == 1
    whole = await backend.generate(CHAT, params)
    assert texts == [whole.text, whole.more[0].text]


async def test_more_choices_than_the_batch_holds_is_a_400_naming_n(backend: TorchBackend) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await backend.generate(CHAT, GenerationParams(max_tokens=4, n=5))
    assert refused.value.param == "n"


async def test_a_constrained_rows_logprobs_are_the_models_not_the_grammars(
    backend: TorchBackend,
) -> None:
    """The grammar masks a copy of the logits: the first step's log probabilities are the
    same with and without a constraint (a masked row would renormalize over the few
    tokens JSON allows, with -inf for the rest)."""
    free = await backend.generate(CHAT, GenerationParams(max_tokens=3, temperature=0, logprobs=5))
    constrained = await backend.generate(
        CHAT,
        GenerationParams(
            max_tokens=3, temperature=0, logprobs=5, constraint=OutputConstraint.json_object()
        ),
    )
    assert free.logprobs is not None
    assert constrained.logprobs is not None
    first_free, first_constrained = free.logprobs[0], constrained.logprobs[0]
    assert [t.token for t in first_constrained.top] == [t.token for t in first_free.top]
    assert [t.logprob for t in first_constrained.top] == pytest.approx(
        [t.logprob for t in first_free.top], abs=1e-4
    )
    assert all(-1e9 < e.logprob <= 0 for e in constrained.logprobs)


PAIR = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"enum": ["x", "y", "z"]}},
    "required": ["a", "b"],
    "additionalProperties": False,
}
CITY = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 8}},
    "required": ["city"],
    "additionalProperties": False,
}


async def test_each_constrained_choice_follows_its_own_matcher(backend: TorchBackend) -> None:
    """Every choice validates and is exactly what its seed gives alone: one matcher
    shared by the rows would refuse the second row's token or cut it short."""
    params = GenerationParams(
        max_tokens=40, temperature=1.0, seed=3, n=3, constraint=OutputConstraint.json_schema(PAIR)
    )
    together = await backend.generate(CHAT, params)
    alone = [await backend.generate(CHAT, replace(params, n=1, seed=3 + i)) for i in range(3)]
    texts = [together.text, *(c.text for c in together.more)]
    assert texts == [c.text for c in alone]
    for text in texts:
        jsonschema.validate(json.loads(text), PAIR)
    assert len(set(texts)) > 1


async def test_every_choice_of_a_forced_call_calls_and_streams_with_its_index(
    backend: TorchBackend,
) -> None:
    forced = Tools(
        (ToolFunction("get_weather", parameters=json.dumps(CITY)),), ToolChoiceMode.REQUIRED
    )
    prompt = Prompt(messages=CHAT.messages, tools=forced)
    params = GenerationParams(max_tokens=40, temperature=1.0, seed=5, n=2)
    whole = await backend.generate(prompt, params)
    calls = [whole.tool_calls, whole.more[0].tool_calls]
    assert [whole.finish_reason, whole.more[0].finish_reason] == [FinishReason.TOOL_CALLS] * 2
    for (call,) in calls:
        assert call.name == "get_weather"
        jsonschema.validate(json.loads(call.arguments), CITY)
    assert calls[0][0].id != calls[1][0].id
    streamed: dict[int, list[ToolCallDelta]] = {0: [], 1: []}
    async for event in backend.stream(prompt, params):
        if isinstance(event, ToolCallDelta):
            streamed[event.choice].append(event)
        elif isinstance(event, StreamEnd):
            assert (event.finish_reason, event.more) == (
                FinishReason.TOOL_CALLS,
                (FinishReason.TOOL_CALLS,),
            )
    for choice, deltas in streamed.items():
        (call,) = merge_deltas(deltas)
        assert (call.name, call.arguments) == (calls[choice][0].name, calls[choice][0].arguments)
