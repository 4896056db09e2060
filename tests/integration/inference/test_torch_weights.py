"""Torch weights as the models TOML asks for them: bfloat16 and dynamic int8 on the demo model."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from llmserver.domain.inference import ChatMessage, GenerationParams, Prompt
from llmserver.domain.registry import ModelSpec

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from llmserver.adapters.inference import torch_loading  # noqa: E402
from llmserver.adapters.inference.torch_backend import TorchBackend  # noqa: E402
from llmserver.adapters.inference.torch_loading import (  # noqa: E402
    cpu_has_bfloat16,
    resolve_dtype,
)

pytestmark = pytest.mark.torch

GREEDY = GenerationParams(max_tokens=16, temperature=0)
PROMPTS = [Prompt(messages=(ChatMessage("user", "Hello " * n),)) for n in range(1, 7)]


def quantized_linears(model: object) -> int:
    dynamic = torch.ao.nn.quantized.dynamic.Linear
    return sum(isinstance(m, dynamic) for m in model.modules())  # type: ignore[attr-defined]


@pytest.fixture
async def int8(demo_spec: ModelSpec) -> AsyncIterator[TorchBackend]:
    backend = TorchBackend(replace(demo_spec, dtype="auto", quantize="int8"))
    yield backend
    await backend.close()


async def test_int8_replaces_every_linear_layer_and_generates(int8: TorchBackend) -> None:
    assert quantized_linears(int8.model) > 0
    assert not any(type(m) is torch.nn.Linear for m in int8.model.modules())
    details = int8.status().details
    assert (details["quantize"], details["dtype"]) == ("int8", "float32")
    completion = await int8.generate(PROMPTS[0], GREEDY)
    assert completion.completion_tokens == 16
    assert completion.text


async def test_int8_rows_share_decode_steps_and_each_finishes(int8: TorchBackend) -> None:
    # Dynamic int8 takes one activation scale over a whole step's rows, so a row's greedy
    # text may differ with its batch-mates (README "Models"): not compared with alone.
    mixed = await asyncio.gather(*(int8.generate(p, GREEDY) for p in PROMPTS))
    assert int8.max_rows_per_step > 1
    assert all(c.text and 0 < c.completion_tokens <= 16 for c in mixed)


async def test_int8_alone_is_deterministic_greedy_and_seeded(int8: TorchBackend) -> None:
    sampled = GenerationParams(max_tokens=20, temperature=1.0, top_p=0.9, seed=7)
    for params in (GREEDY, sampled):
        first = await int8.generate(PROMPTS[1], params)
        assert await int8.generate(PROMPTS[1], params) == first


@pytest.mark.skipif(not cpu_has_bfloat16(), reason="this CPU has no native bfloat16")
async def test_bfloat16_loads_and_generates(demo_spec: ModelSpec) -> None:
    backend = TorchBackend(replace(demo_spec, dtype="bfloat16"))
    try:
        assert {p.dtype for p in backend.model.parameters()} == {torch.bfloat16}
        assert backend.status().details["dtype"] == "bfloat16"
        completions = await asyncio.gather(*(backend.generate(p, GREEDY) for p in PROMPTS))
        assert all(c.completion_tokens == 16 for c in completions)
    finally:
        await backend.close()


def test_bfloat16_without_native_support_falls_back_to_float32_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(torch_loading, "cpu_has_bfloat16", lambda: False)  # an older CPU
    with caplog.at_level(logging.WARNING, logger=torch_loading.__name__):
        dtype = resolve_dtype("bfloat16", torch.device("cpu"), model_id="m1")
    assert dtype == torch.float32
    assert "model m1: dtype 'bfloat16' asked for, but this CPU has no native" in caplog.text


def test_a_spec_the_toml_check_never_saw_is_refused_at_load(demo_spec: ModelSpec) -> None:
    with pytest.raises(RuntimeError, match="model 'demo-tiny': unknown quantize 'int4'"):
        torch_loading.load_model(replace(demo_spec, quantize="int4"))
    with pytest.raises(RuntimeError, match="quantize 'int8' runs on CPU in float32 only"):
        # float16, not bfloat16: a CPU without native bfloat16 loads float32 for it instead.
        torch_loading.load_model(replace(demo_spec, quantize="int8", dtype="float16"))
