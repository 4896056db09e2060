"""The MLX backend on the tiny demo model (MLX's CPU build runs it on Linux)."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from llmserver.domain.errors import Overloaded
from llmserver.domain.inference import (
    ChatMessage,
    FinishReason,
    GenerationParams,
    Prompt,
    TextDelta,
)
from llmserver.domain.registry import BackendKind, ModelSpec

pytest.importorskip("mlx_lm")

from llmserver.adapters.inference.mlx_backend import MlxBackend

pytestmark = pytest.mark.mlx

CHAT = Prompt(messages=(ChatMessage("user", "Hello there"),))


@pytest.fixture
async def backend(demo_spec: ModelSpec) -> AsyncIterator[MlxBackend]:
    # The spec's own max_batch_size: batching on MLX's CPU device too.
    made = MlxBackend(replace(demo_spec, backend=BackendKind.MLX, max_batch_size=8))
    yield made
    await made.close()


@pytest.fixture
async def one_row(demo_spec: ModelSpec) -> AsyncIterator[MlxBackend]:
    """One row at a time, so that a second request has to wait in the queue."""
    made = MlxBackend(replace(demo_spec, backend=BackendKind.MLX), max_batch_size=1, max_queue=2)
    yield made
    await made.close()


async def test_greedy_equals_mlx_lm_generate(backend: MlxBackend, demo_spec: ModelSpec) -> None:
    import mlx_lm

    model, tokenizer = mlx_lm.load(demo_spec.source)[:2]  # typed as maybe with a config too
    # mlx_lm leaves its TokenizerWrapper's methods unannotated.
    ids = tokenizer.apply_chat_template(  # type: ignore[no-untyped-call]
        [{"role": "user", "content": "Hello there"}], add_generation_prompt=True, return_dict=False
    )
    expected = mlx_lm.generate(model, tokenizer, prompt=ids, max_tokens=30)
    completion = await backend.generate(CHAT, GenerationParams(max_tokens=30, temperature=0))
    assert completion.text == expected
    assert completion.prompt_tokens == len(ids) == await backend.count_tokens(CHAT)
    assert completion.completion_tokens == 30
    assert completion.finish_reason is FinishReason.LENGTH


async def test_same_seed_same_text(backend: MlxBackend) -> None:
    params = GenerationParams(max_tokens=30, temperature=1.0, top_p=0.9, seed=11)
    first, again = await asyncio.gather(
        backend.generate(CHAT, params), backend.generate(CHAT, params)
    )
    other = await backend.generate(CHAT, replace(params, seed=12))
    assert first == again
    assert other.text != first.text


async def test_top_k_1_samples_the_greedy_answer(backend: MlxBackend) -> None:
    greedy = await backend.generate(CHAT, GenerationParams(max_tokens=20, temperature=0.0))
    sampled = GenerationParams(max_tokens=20, temperature=1.0, seed=3)
    assert await backend.generate(CHAT, replace(sampled, top_k=1)) == greedy
    assert (await backend.generate(CHAT, sampled)).text != greedy.text


async def test_stop_string(backend: MlxBackend) -> None:
    params = GenerationParams(max_tokens=40, seed=3)
    full = (await backend.generate(CHAT, params)).text
    stop = full[10:13]
    stopped = await backend.generate(CHAT, replace(params, stop=(stop,)))
    assert stopped.finish_reason is FinishReason.STOP
    assert stopped.text == full[: full.find(stop)]


async def test_concurrent_requests_are_batched_and_answer_as_alone(
    backend: MlxBackend,
) -> None:
    """Eight requests of different prompts and lengths at once: they share decode steps,
    and each greedy answer is the one it gets alone."""
    prompts = [Prompt(messages=(ChatMessage("user", "Hello " * n),)) for n in range(1, 9)]
    params = [GenerationParams(max_tokens=8 + 3 * n, temperature=0) for n in range(8)]
    alone = [await backend.generate(p, q) for p, q in zip(prompts, params, strict=True)]
    assert backend.status().details["max_rows_per_step"] == "1"
    together = await asyncio.gather(
        *(backend.generate(p, q) for p, q in zip(prompts, params, strict=True))
    )
    assert int(backend.status().details["max_rows_per_step"]) > 1
    assert [c.text for c in together] == [c.text for c in alone]
    assert [c.completion_tokens for c in together] == [8 + 3 * n for n in range(8)]


async def test_seeded_sample_is_the_same_alone_and_in_a_batch(backend: MlxBackend) -> None:
    sampled = GenerationParams(max_tokens=20, temperature=1.0, seed=5)
    alone = await backend.generate(CHAT, sampled)
    noise = [GenerationParams(max_tokens=30, temperature=1.0, seed=s) for s in range(4)]
    together = await asyncio.gather(
        backend.generate(CHAT, sampled), *(backend.generate(CHAT, p) for p in noise)
    )
    assert together[0] == alone


class _FailsOnItsThirdToken:
    """A row's token events, except that the third token's decoding raises."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._tokens = 0

    def push(self, token: int, logprob: Any = None) -> Any:
        self._tokens += 1
        if self._tokens == 3:
            raise RuntimeError("injected fault")
        return self._inner.push(token, logprob)


async def test_a_row_that_fails_leaves_and_the_others_finish(
    backend: MlxBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    others = [
        (Prompt(text="Once upon a time"), GenerationParams(max_tokens=20, temperature=0)),
        (CHAT, GenerationParams(max_tokens=20, seed=4)),
    ]
    expected = [await backend.generate(p, q) for p, q in others]
    poison = GenerationParams(max_tokens=37, temperature=0)
    admit = backend._admit

    def poisoning(gen: Any, jobs: list[Any]) -> None:
        for job in jobs:
            if job.params == poison:
                job.events = _FailsOnItsThirdToken(job.events)
        admit(gen, jobs)

    monkeypatch.setattr(backend, "_admit", poisoning)
    failed, *rest = await asyncio.gather(
        backend.generate(CHAT, poison),
        *(backend.generate(p, q) for p, q in others),
        return_exceptions=True,
    )
    assert isinstance(failed, RuntimeError)
    assert str(failed) == "injected fault"
    assert rest == expected
    assert backend.status().details["active"] == "0"


async def test_a_cancelled_stream_leaves_the_batch_and_the_others_finish(
    backend: MlxBackend,
) -> None:
    # Greedy, so the other request's answer is known: an unseeded sample of random weights
    # may stop at the end-of-text token after one token (CI saw it).
    greedy = GenerationParams(max_tokens=12, temperature=0)
    alone = await backend.generate(CHAT, greedy)
    running = backend.stream(CHAT, GenerationParams(max_tokens=400, seed=1))
    assert isinstance(await anext(running), TextDelta)
    other = asyncio.create_task(backend.generate(CHAT, greedy))
    await running.aclose()  # type: ignore[attr-defined]
    assert await other == alone
    assert backend.status().details["active"] == "0"


async def test_queue_is_bounded_and_cancel_frees_it(one_row: MlxBackend) -> None:
    backend = one_row
    running = backend.stream(CHAT, GenerationParams(max_tokens=400, seed=1))
    assert isinstance(await anext(running), TextDelta)
    queued = [
        asyncio.create_task(backend.generate(CHAT, GenerationParams(max_tokens=2)))
        for _ in range(2)
    ]
    await asyncio.sleep(0)
    assert backend.status().queue_depth == 2
    with pytest.raises(Overloaded):
        backend.stream(CHAT, GenerationParams(max_tokens=2))
    queued[0].cancel()
    await asyncio.gather(queued[0], return_exceptions=True)
    assert backend.status().queue_depth == 1
    await running.aclose()  # type: ignore[attr-defined]
    assert (await queued[1]).completion_tokens == 2


async def test_on_the_cpu_device_a_model_runs_one_row_unless_its_spec_says(
    demo_spec: ModelSpec,
) -> None:
    import mlx.core as mx

    if mx.default_device() != mx.cpu:
        pytest.skip("MLX runs on a GPU here")
    default = MlxBackend(replace(demo_spec, backend=BackendKind.MLX), max_batch_size=8)
    try:
        assert default.status().details["max_batch_size"] == "1"
        done = await asyncio.gather(
            # Greedy: a sample may meet EOS before 6 tokens on the demo model's random weights.
            *(
                default.generate(CHAT, GenerationParams(max_tokens=6, temperature=0))
                for _ in range(3)
            )
        )
        assert [c.completion_tokens for c in done] == [6, 6, 6]
        assert default.max_rows_per_step == 1
    finally:
        await default.close()


def test_missing_mlx_fails_at_load_with_the_install_hint(
    demo_spec: ModelSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mlx_lm", None)  # what an uninstalled package looks like
    with pytest.raises(RuntimeError, match=re.escape('pip install "llmserver[mlx]"')):
        MlxBackend(replace(demo_spec, backend=BackendKind.MLX))


async def test_logprobs_rank_the_greedy_token_first(backend: MlxBackend) -> None:
    completion = await backend.generate(
        CHAT, GenerationParams(max_tokens=12, temperature=0, logprobs=3)
    )
    assert completion.logprobs
    assert "".join(e.token for e in completion.logprobs) == completion.text
    for entry in completion.logprobs:
        assert entry.logprob <= 0
        assert entry.top[0].token == entry.token
        assert entry.top[0].logprob == pytest.approx(entry.logprob)
        tops = [t.logprob for t in entry.top]
        assert tops == sorted(tops, reverse=True)


async def test_each_choice_is_the_sample_of_its_own_seed(backend: MlxBackend) -> None:
    params = GenerationParams(max_tokens=10, temperature=1.0, seed=12, n=3)
    together = await backend.generate(CHAT, params)
    alone = [await backend.generate(CHAT, replace(params, n=1, seed=12 + i)) for i in range(3)]
    assert [together.text, *(c.text for c in together.more)] == [c.text for c in alone]
    assert together.completion_tokens == sum(c.completion_tokens for c in alone)


async def test_choices_queue_as_rows_on_one_row_at_a_time(one_row: MlxBackend) -> None:
    """n rows wait their turn where the batch holds one: they still all arrive."""
    completion = await one_row.generate(
        CHAT, GenerationParams(max_tokens=4, temperature=1.0, seed=1, n=2)
    )
    assert len(completion.more) == 1
