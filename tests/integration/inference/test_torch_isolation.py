"""One request's failure in the torch backend is that request's alone: the rows batched with
it finish with exactly the text they would have had without it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest

from llmserver.adapters.inference.generation import collect
from llmserver.domain.errors import InvalidRequest
from llmserver.domain.inference import (
    ChatMessage,
    Completion,
    GenerationParams,
    Prompt,
    TokenLogprob,
)
from llmserver.domain.registry import ModelSpec

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from llmserver.adapters.inference.torch_backend import TorchBackend  # noqa: E402
from llmserver.adapters.inference.torch_request import TorchRequest  # noqa: E402

pytestmark = pytest.mark.torch

POISON = Prompt(text="a poisoned prompt, whatever it is")
OTHERS: list[tuple[Prompt, GenerationParams, bool]] = [
    (Prompt(text="Once upon a time"), GenerationParams(max_tokens=40, temperature=0), True),
    (Prompt(text="The cat sat"), GenerationParams(max_tokens=40, seed=7), True),
    (Prompt(text="x " * 9 + "then"), GenerationParams(max_tokens=40, temperature=0), False),
    (
        Prompt(messages=(ChatMessage("user", "Hello there"),)),
        GenerationParams(max_tokens=40, seed=3),
        False,
    ),
]
"""(prompt, params, streamed): greedy and sampled, streamed and not, of several lengths."""


@pytest.fixture
async def backend(demo_spec: ModelSpec) -> AsyncIterator[TorchBackend]:
    # No prefix cache: a prompt run before would start from cached blocks, and only new
    # prompts are prefilled as one group.
    backend = TorchBackend(
        demo_spec, max_batch_size=8, max_queue=16, request_timeout_s=60.0, prefix_cache_mb=0
    )
    yield backend
    await backend.close()


def _run(backend: TorchBackend, prompt: Prompt, params: GenerationParams, streamed: bool) -> Any:
    if streamed:
        return collect(backend.stream(prompt, params), params)
    return backend.generate(prompt, params)


async def _together(
    backend: TorchBackend, poison: GenerationParams
) -> tuple[BaseException | Completion, list[Completion]]:
    """The poisoned request and the others, admitted to the batch as one group."""
    # The worker takes the lock to admit what waits: holding it until every request
    # waits makes them one prefill group, however long each takes to be submitted.
    with backend._cond:
        runs: list[Awaitable[Any]] = [
            asyncio.ensure_future(_run(backend, *other))
            for other in [(POISON, poison, True), *OTHERS]
        ]
        async with asyncio.timeout(30):
            while len(backend._waiting) < len(runs):
                await asyncio.sleep(0.005)
    first, *rest = await asyncio.gather(*runs, return_exceptions=True)
    others = [r for r in rest if isinstance(r, Completion)]
    assert others == rest, rest
    assert isinstance(first, BaseException | Completion)
    return first, others


async def _alone(backend: TorchBackend) -> list[Completion]:
    return [await _run(backend, *other) for other in OTHERS]


async def test_a_row_whose_sampling_fails_leaves_and_the_others_finish(
    backend: TorchBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = await _alone(backend)
    poisoned = backend.tokenizer.encode(POISON.text)
    advance = backend._advance

    def fails_on_its_third_token(
        row: TorchRequest, token: int, logprob: TokenLogprob | None
    ) -> bool:
        if row.events.completion_tokens == 2 and row.prompt_ids == poisoned:
            raise RuntimeError("injected fault")
        return advance(row, token, logprob)

    monkeypatch.setattr(backend, "_advance", fails_on_its_third_token)
    failed, others = await _together(backend, GenerationParams(max_tokens=40, seed=1))
    assert isinstance(failed, RuntimeError)
    assert str(failed) == "injected fault"
    assert others == expected
    assert backend.max_rows_per_step == len(OTHERS) + 1


class _FailingPrefill:
    """The model, except that a forward pass over the poisoned prompt fails."""

    def __init__(self, model: Any, poisoned: list[int]) -> None:
        self._model = model
        self._poisoned = poisoned
        self.failed_rows: list[int] = []
        """How many rows each failed forward pass held."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def __call__(self, *, input_ids: Any, **kwargs: Any) -> Any:
        n = len(self._poisoned)
        if any(row[-n:].tolist() == self._poisoned for row in input_ids):
            self.failed_rows.append(len(input_ids))
            raise RuntimeError("injected fault")
        return self._model(input_ids=input_ids, **kwargs)


async def test_a_failing_group_prefill_fails_only_the_row_that_fails_alone(
    backend: TorchBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = await _alone(backend)
    model = _FailingPrefill(backend.model, backend.tokenizer.encode(POISON.text))
    monkeypatch.setattr(backend, "model", model)
    monkeypatch.setattr(backend._prefill, "_model", model)
    failed, others = await _together(backend, GenerationParams(max_tokens=40, temperature=0))
    assert isinstance(failed, RuntimeError)
    assert str(failed) == "injected fault"
    assert others == expected
    assert model.failed_rows == [len(OTHERS) + 1, 1]


async def test_a_temperature_too_small_to_divide_by_is_greedy(backend: TorchBackend) -> None:
    greedy = await backend.generate(POISON, GenerationParams(max_tokens=24, temperature=0))
    for temperature in (1e-6, 1e-39, 1e-300, 5e-324):
        tiny = GenerationParams(max_tokens=24, temperature=temperature, seed=1)
        assert await backend.generate(POISON, tiny) == greedy
        assert await collect(backend.stream(POISON, tiny), tiny) == greedy


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "generate"])
async def test_a_prompt_of_no_tokens_is_refused(backend: TorchBackend, streamed: bool) -> None:
    assert backend.tokenizer.encode("") == []
    with pytest.raises(InvalidRequest, match="no tokens") as refused:
        await _run(backend, Prompt(text=""), GenerationParams(max_tokens=4), streamed)
    assert refused.value.param == "prompt"
