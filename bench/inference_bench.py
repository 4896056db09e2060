"""Inference benchmark: the torch backend against raw transformers on the ~100M bench model.

Every comparison runs in one process on the same weights (the raw measurements use the
backend's own model object while its worker is idle), and raw and backend runs
alternate so drift in machine load hits both sides alike. Generation is greedy, so the
backend produces exactly the tokens ``model.generate`` produces.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.raw import RawModel
from bench.report import Target, progress, save

NEW_TOKENS = 32
REPEATS = 3
TTFT_REPEATS = 7
CONCURRENCY = 8
PROMPTS = [
    "Write a short story about a clockmaker who never slept.",
    "Summarise the history of the printing press in three sentences.",
    "What is the capital of France?",
    "List five ingredients for a simple cake and explain what each one does.",
    "Translate into German: thank you very much for the lovely dinner.",
    "Why is the sky blue?",
    "Give me three tips for gardening in early spring, one sentence each.",
    "Explain batching to a new engineer in two short paragraphs.",
]


def model_dir() -> Path:
    default = Path.home() / ".cache" / "llmserver" / "demo-model-bench"
    return Path(os.environ.get("LLMSERVER_BENCH_MODEL_DIR", default))


def run() -> list[Target]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from llmserver.adapters.inference.demo_model import build_demo_model

    path = build_demo_model(model_dir(), size="bench", progress=progress)
    return asyncio.run(_measure(path))


async def _measure(path: Path) -> list[Target]:
    import torch

    from llmserver.adapters.inference.prompts import encode_prompt
    from llmserver.adapters.inference.torch_backend import TorchBackend
    from llmserver.domain.inference import ChatMessage, GenerationParams, Prompt
    from llmserver.domain.registry import BackendKind, ModelSpec

    spec = ModelSpec(
        id="bench", backend=BackendKind.TORCH, source=str(path), device="cpu", dtype="float32"
    )
    load_before = os.getloadavg()[0]
    progress(f"loading the bench model from {path}")
    backend = TorchBackend(spec, max_batch_size=CONCURRENCY, max_queue=64)
    model, tokenizer = backend.model, backend.tokenizer
    params = sum(p.numel() for p in model.parameters())
    prompts = [Prompt(messages=(ChatMessage("user", text),)) for text in PROMPTS]
    prompt_ids = [encode_prompt(tokenizer, p, spec.id) for p in prompts]
    greedy = GenerationParams(max_tokens=NEW_TOKENS, temperature=0.0)

    raw = RawModel(model, tokenizer, NEW_TOKENS)

    def raw_single() -> float:
        return raw.single(prompt_ids[0])

    async def backend_single() -> float:
        started = time.perf_counter()
        completion = await backend.generate(prompts[0], greedy)
        return completion.completion_tokens / (time.perf_counter() - started)

    def raw_batch() -> float:
        return raw.batch(prompt_ids)

    async def backend_concurrent() -> float:
        started = time.perf_counter()
        done = await asyncio.gather(*(backend.generate(p, greedy) for p in prompts))
        return sum(c.completion_tokens for c in done) / (time.perf_counter() - started)

    def raw_prefill() -> float:
        return raw.prefill(prompt_ids[0])

    async def backend_ttft() -> float:
        started = time.perf_counter()
        stream = backend.stream(prompts[0], GenerationParams(max_tokens=1, temperature=0.0))
        await anext(stream)
        elapsed = time.perf_counter() - started
        await stream.aclose()  # type: ignore[attr-defined]
        return elapsed

    samples: dict[str, list[float]] = {}

    async def alternate(
        label_a: str, a: Callable[[], Any], label_b: str, b: Callable[[], Any], repeats: int
    ) -> None:
        for i in range(repeats + 1):  # the first round warms up and is discarded
            for label, measure in ((label_a, a), (label_b, b)):
                value = measure()
                if asyncio.iscoroutine(value):
                    value = await value
                if i:
                    samples.setdefault(label, []).append(value)
            if i:
                progress(
                    f"{label_a} {samples[label_a][-1]:.4g} / {label_b} {samples[label_b][-1]:.4g}"
                    f" (round {i}/{repeats})"
                )

    try:
        progress(f"single stream, {NEW_TOKENS} new tokens, greedy")
        await alternate("raw_single", raw_single, "backend_single", backend_single, REPEATS)
        progress(f"batch of {CONCURRENCY}: raw left-padded generate vs concurrent clients")
        await alternate("raw_batch", raw_batch, "backend_concurrent", backend_concurrent, REPEATS)
        progress("time to first token vs raw prefill")
        await alternate("raw_prefill_s", raw_prefill, "backend_ttft_s", backend_ttft, TTFT_REPEATS)
    finally:
        rows_seen = backend.max_rows_per_step
        await backend.close()

    m = {k: statistics.median(v) for k, v in samples.items()}
    targets = [
        Target(
            "backend single stream / raw generate",
            m["backend_single"] / m["raw_single"],
            0.95,
            ">=",
        ),
        Target(
            f"backend {CONCURRENCY} concurrent / backend single",
            m["backend_concurrent"] / m["backend_single"],
            3.0,
            ">=",
        ),
        Target(
            f"backend {CONCURRENCY} concurrent / raw batch {CONCURRENCY}",
            m["backend_concurrent"] / m["raw_batch"],
            0.8,
            ">=",
        ),
        Target(
            "backend TTFT - raw prefill (ms, p50)",
            (m["backend_ttft_s"] - m["raw_prefill_s"]) * 1000,
            5.0,
            "<=",
        ),
    ]
    measurements = {
        "model": f"random Llama, {params / 1e6:.0f}M params, fp32, {torch.get_num_threads()} "
        f"torch threads, torch {torch.__version__}",
        "raw generate, single stream": f"{m['raw_single']:.1f} tok/s",
        "backend, single stream": f"{m['backend_single']:.1f} tok/s",
        f"raw generate, left-padded batch of {CONCURRENCY}": f"{m['raw_batch']:.1f} tok/s "
        f"({m['raw_batch'] / m['raw_single']:.2f}x raw single: this machine's batching headroom)",
        f"backend, {CONCURRENCY} concurrent clients": f"{m['backend_concurrent']:.1f} tok/s "
        f"(max {rows_seen} rows per step)",
        "raw prefill (p50)": f"{m['raw_prefill_s'] * 1000:.1f} ms",
        "backend time to first token (p50)": f"{m['backend_ttft_s'] * 1000:.1f} ms",
        "machine load (1-min average, start / end)": f"{load_before:.1f} / "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other work skews every ratio)",
        "settings": f"{NEW_TOKENS} new tokens, median of {REPEATS} rounds "
        f"({TTFT_REPEATS} for TTFT) after one warm-up, raw and backend alternating",
    }
    save(
        "inference", "Inference: torch backend vs raw transformers", measurements, targets, samples
    )
    return targets
