"""Structured-output benchmark: what a grammar-constrained decode step costs against a free
one on the tiny demo model (``llmserver demo-model build``), where the model's own step is
cheapest and so the grammar's share the largest.

Four streams decode at once, all constrained (a JSON schema: an array of at least 40
objects with an enum, a bounded integer, a patterned string and a boolean, so every row runs
its whole token budget through the grammar's structure) or all free; the rounds alternate
in one backend, so drift in machine load hits both alike. A step's cost is a gap between
two tokens of a stream; the ratio compares the medians.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.inference_bench import PROMPTS
from bench.report import Target, progress, save

if TYPE_CHECKING:
    from llmserver.adapters.inference.torch_backend import TorchBackend
    from llmserver.domain.inference import GenerationParams

ROWS = 4
TOKENS = 96
ROUNDS = 6
THREADS = 1
"""One torch thread (as the prefill benchmark): on a shared 2-core machine a pool stalls
whenever one of its threads waits for a core, which would swamp the ratio."""
LIMIT = 1.5
SCHEMA: dict[str, Any] = {
    "type": "array",
    "minItems": 40,
    "items": {
        "type": "object",
        "properties": {
            "kind": {"enum": ["cat", "dog", "fish"]},
            "age": {"type": "integer", "minimum": 0, "maximum": 30},
            "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
            "tame": {"type": "boolean"},
        },
        "required": ["kind", "age", "zip", "tame"],
        "additionalProperties": False,
    },
}


def model_dir() -> Path:
    default = Path.home() / ".cache" / "llmserver" / "demo-model-tiny"
    return Path(os.environ.get("LLMSERVER_BENCH_TINY_MODEL_DIR", default))


def run() -> list[Target]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from llmserver.adapters.inference.demo_model import build_demo_model

    path = build_demo_model(model_dir(), size="tiny", progress=progress)
    return asyncio.run(_measure(path))


async def _gaps(backend: TorchBackend, params: GenerationParams) -> tuple[list[float], int]:
    """The gaps between tokens of ``ROWS`` concurrent streams, and the tokens they made."""
    from llmserver.domain.inference import ChatMessage, Prompt, StreamEnd

    async def one(prompt: str) -> tuple[list[float], int]:
        gaps: list[float] = []
        last = None
        async for event in backend.stream(Prompt(messages=(ChatMessage("user", prompt),)), params):
            now = time.perf_counter()
            if isinstance(event, StreamEnd):
                return gaps, event.completion_tokens
            if last is not None:
                gaps.append(now - last)
            last = now
        raise AssertionError("no StreamEnd")

    results = await asyncio.gather(*(one(p) for p in PROMPTS[:ROWS]))
    return [g for gaps, _ in results for g in gaps], sum(n for _, n in results)


async def _measure(path: Path) -> list[Target]:
    from llmserver.adapters.inference.torch_backend import TorchBackend
    from llmserver.domain.inference import GenerationParams
    from llmserver.domain.output_constraint import OutputConstraint
    from llmserver.domain.registry import BackendKind, ModelSpec

    spec = ModelSpec(
        id="tiny", backend=BackendKind.TORCH, source=str(path), device="cpu", dtype="float32"
    )
    backend = TorchBackend(spec, threads=THREADS, max_batch_size=ROWS)
    constraint = OutputConstraint.json_schema(SCHEMA)
    kinds = {
        "free": GenerationParams(max_tokens=TOKENS, temperature=0.0),
        "constrained": GenerationParams(max_tokens=TOKENS, temperature=0.0, constraint=constraint),
    }
    gaps: dict[str, list[float]] = {kind: [] for kind in kinds}
    tokens = dict.fromkeys(kinds, 0)
    try:
        for params in kinds.values():  # warm-up: compile, caches, first allocations
            await _gaps(backend, params)
        for round_ in range(ROUNDS):
            progress(f"round {round_ + 1}/{ROUNDS}")
            for kind, params in kinds.items():
                measured, made = await _gaps(backend, params)
                gaps[kind] += measured
                tokens[kind] += made
    finally:
        await backend.close()
    median = {kind: statistics.median(values) for kind, values in gaps.items()}
    ratio = median["constrained"] / median["free"]
    measurements = {
        f"{kind} step (median gap between tokens, {ROWS} rows)": f"{median[kind] * 1000:.2f} ms"
        for kind in kinds
    } | {f"{kind} tokens measured": str(tokens[kind]) for kind in kinds}
    targets = [
        Target(
            "constrained step / free step (tiny demo model)",
            ratio,
            LIMIT,
            "<=",
            f"{ROWS} rows, {TOKENS} tokens each, {ROUNDS} alternating rounds, one thread",
        )
    ]
    print(
        save(
            "structured",
            "Structured outputs: constrained against free decode steps",
            measurements,
            targets,
            {"gaps_ms": {k: [g * 1000 for g in v] for k, v in gaps.items()}},
        )
    )
    return targets
