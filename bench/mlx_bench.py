"""MLX backend batching: 8 concurrent requests against one, on the ~100M bench model.

What it measures decides whether a model on MLX's CPU device batches by default (it runs
one row at a time unless its spec sets ``max_batch_size``; mlx_backend.py): the model here
sets it, so the concurrent requests do share decode steps.

The same weights as the torch benchmarks (mlx-lm loads the safetensors Llama directory;
MLX's CPU build on Linux). Single and concurrent runs alternate within each round, so
drift in machine load hits both alike.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

from bench.inference_bench import CONCURRENCY, PROMPTS, model_dir
from bench.report import Target, progress, save

NEW_TOKENS = 16
REPEATS = 2
"""Smaller than the torch benchmarks': MLX's CPU build decodes this model several times
slower than torch here, and a round runs 9 requests."""


def run() -> list[Target]:
    import importlib.util

    if importlib.util.find_spec("mlx_lm") is None:
        progress('skipped: mlx-lm is not installed (pip install "llmserver[mlx]")')
        return []
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from llmserver.adapters.inference.demo_model import build_demo_model

    path = build_demo_model(model_dir(), size="bench", progress=progress)
    return asyncio.run(_measure(str(path)))


async def _measure(path: str) -> list[Target]:
    from llmserver.adapters.inference.mlx_backend import MlxBackend
    from llmserver.domain.inference import ChatMessage, GenerationParams, Prompt
    from llmserver.domain.registry import BackendKind, ModelSpec

    load_before = os.getloadavg()[0]
    progress(f"loading the bench model into MLX from {path}")
    spec = ModelSpec(
        id="bench-mlx", backend=BackendKind.MLX, source=path, max_batch_size=CONCURRENCY
    )
    backend = MlxBackend(spec)
    prompts = [Prompt(messages=(ChatMessage("user", text),)) for text in PROMPTS]
    greedy = GenerationParams(max_tokens=NEW_TOKENS, temperature=0.0)

    async def single() -> float:
        started = time.perf_counter()
        completion = await backend.generate(prompts[0], greedy)
        return float(completion.completion_tokens) / (time.perf_counter() - started)

    async def concurrent() -> float:
        started = time.perf_counter()
        done = await asyncio.gather(*(backend.generate(p, greedy) for p in prompts))
        return float(sum(c.completion_tokens for c in done)) / (time.perf_counter() - started)

    samples: dict[str, list[float]] = {"single": [], "concurrent": []}
    try:
        for i in range(REPEATS + 1):  # the first round warms up and is discarded
            one, many = await single(), await concurrent()
            if i:
                samples["single"].append(one)
                samples["concurrent"].append(many)
                progress(f"round {i}/{REPEATS}: single {one:.1f}, concurrent {many:.1f} tok/s")
        rows = backend.max_rows_per_step
    finally:
        await backend.close()

    m = {k: statistics.median(v) for k, v in samples.items()}
    targets = [
        Target(
            f"MLX {CONCURRENCY} concurrent / MLX single",
            m["concurrent"] / m["single"],
            1.0,
            ">=",
            "(batching pays; below 1 a model on MLX's CPU device rightly runs one row)",
        )
    ]
    measurements = {
        "model": "random Llama, 98M params, MLX CPU build",
        "MLX backend, single stream": f"{m['single']:.1f} tok/s",
        f"MLX backend, {CONCURRENCY} concurrent": f"{m['concurrent']:.1f} tok/s "
        f"(max {rows} rows per step)",
        "machine load (1-min average, start / end)": f"{load_before:.1f} / "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
        "settings": f"{NEW_TOKENS} new tokens, greedy, median of {REPEATS} rounds after one "
        "warm-up, single and concurrent alternating",
    }
    save("mlx", "MLX backend: batched generation", measurements, targets, samples)
    return targets
