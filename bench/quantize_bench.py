"""Quantised and half-precision weights against float32 on the ~100M bench model (torch, CPU).

Three torch backends load the same weights: float32 (the baseline), ``dtype = "bfloat16"``
and ``quantize = "int8"``. Each round runs every variant in turn (a single greedy stream,
then 8 concurrent ones), so drift in machine load hits all alike; ratios are of medians.
Quality: greedy output of each variant against float32 over a fixed prompt set, as the
share of the first 32 tokens that agree position by position, and the tokens before the
first difference. The bench model's weights are random, so its logits are nearly flat and
any rounding flips the argmax: the agreement is reported, not a target (a trained model's
margins are far wider).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

from bench.inference_bench import CONCURRENCY, PROMPTS, model_dir
from bench.report import Target, progress, save

NEW_TOKENS = 32
REPEATS = 3
VARIANTS = {"fp32": ("float32", "none"), "bf16": ("bfloat16", "none"), "int8": ("auto", "int8")}
"""Label -> (dtype, quantize) in the models TOML."""


@dataclass(frozen=True)
class _Variant:
    label: str
    backend: Any


def run() -> list[Target]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from llmserver.adapters.inference.demo_model import build_demo_model

    path = build_demo_model(model_dir(), size="bench", progress=progress)
    return asyncio.run(_measure(str(path)))


def agreement(reference: list[list[int]], other: list[list[int]]) -> tuple[float, float]:
    """Share of positions whose tokens agree, and the mean tokens before the first difference."""
    same = total = 0
    prefixes = []
    for ref, out in zip(reference, other, strict=True):
        pairs = list(zip(ref, out, strict=True))
        same += sum(a == b for a, b in pairs)
        total += len(pairs)
        prefixes.append(next((i for i, (a, b) in enumerate(pairs) if a != b), len(pairs)))
    return same / total, statistics.mean(prefixes)


def _greedy_tokens(backend: Any, prompt_ids: list[list[int]]) -> list[list[int]]:
    """Each prompt's first NEW_TOKENS greedy tokens, one prompt at a time (no padding)."""
    import torch

    out = []
    with torch.inference_mode():
        for ids in prompt_ids:
            tensor = torch.tensor([ids])
            generated = backend.model.generate(
                tensor, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False
            )
            out.append(generated[0, tensor.shape[1] :].tolist())
    return out


def _forced_agreement(
    backend: Any, prompt_ids: list[list[int]], reference: list[list[int]]
) -> float:
    """Share of positions where the variant's top token is float32's, fed float32's tokens.

    Unlike free-running agreement, one early difference does not make every later
    position differ: it measures each step's rounding alone."""
    import torch

    same = total = 0
    with torch.inference_mode():
        for ids, ref in zip(prompt_ids, reference, strict=True):
            tensor = torch.tensor([ids + ref[:-1]])
            logits = backend.model(input_ids=tensor).logits[0, len(ids) - 1 :]
            same += sum(int(a) == b for a, b in zip(logits.argmax(-1).tolist(), ref, strict=True))
            total += len(ref)
    return same / total


async def _measure(path: str) -> list[Target]:
    import torch

    from llmserver.adapters.inference.prompts import encode_prompt
    from llmserver.adapters.inference.torch_backend import TorchBackend
    from llmserver.adapters.inference.torch_loading import cpu_has_bfloat16
    from llmserver.domain.inference import ChatMessage, GenerationParams, Prompt
    from llmserver.domain.registry import BackendKind, ModelSpec

    load_before = os.getloadavg()[0]
    variants = []
    for label, (dtype, quantize) in VARIANTS.items():
        progress(f"loading {label} (dtype {dtype}, quantize {quantize})")
        spec = ModelSpec(
            id=f"bench-{label}",
            backend=BackendKind.TORCH,
            source=path,
            device="cpu",
            dtype=dtype,
            quantize=quantize,
        )
        variants.append(_Variant(label, TorchBackend(spec, max_batch_size=CONCURRENCY)))
    prompts = [Prompt(messages=(ChatMessage("user", text),)) for text in PROMPTS]
    greedy = GenerationParams(max_tokens=NEW_TOKENS, temperature=0.0)
    # Requests cannot set a minimum length: tokens/s counts what each request produced, so a
    # greedy path that meets EOS early counts as such, alike for every variant.

    async def single(backend: Any) -> float:
        started = time.perf_counter()
        completion = await backend.generate(prompts[0], greedy)
        return float(completion.completion_tokens) / (time.perf_counter() - started)

    async def concurrent(backend: Any) -> float:
        started = time.perf_counter()
        done = await asyncio.gather(*(backend.generate(p, greedy) for p in prompts))
        return float(sum(c.completion_tokens for c in done)) / (time.perf_counter() - started)

    samples: dict[str, list[float]] = {}
    try:
        for i in range(REPEATS + 1):  # the first round warms up and is discarded
            for v in variants:
                for kind, measure in (("single", single), ("concurrent", concurrent)):
                    value = await measure(v.backend)
                    if i:
                        samples.setdefault(f"{v.label}_{kind}", []).append(value)
            if i:
                progress(
                    f"round {i}/{REPEATS}: "
                    + ", ".join(f"{k} {s[-1]:.1f}" for k, s in samples.items())
                    + " tok/s"
                )
        progress(f"greedy agreement over {len(PROMPTS)} prompts x {NEW_TOKENS} tokens")
        tokenizer = variants[0].backend.tokenizer
        prompt_ids = [encode_prompt(tokenizer, p, "bench") for p in prompts]
        tokens = {v.label: _greedy_tokens(v.backend, prompt_ids) for v in variants}
        forced = {
            v.label: _forced_agreement(v.backend, prompt_ids, tokens["fp32"]) for v in variants
        }
    finally:
        for v in variants:
            await v.backend.close()

    m = {k: statistics.median(s) for k, s in samples.items()}
    targets = []
    measurements = {
        "model": f"random Llama, 98M params, {torch.get_num_threads()} torch threads, torch "
        f"{torch.__version__}, native bfloat16: {'yes' if cpu_has_bfloat16() else 'no'}",
        "fp32, single stream": f"{m['fp32_single']:.1f} tok/s",
        f"fp32, {CONCURRENCY} concurrent": f"{m['fp32_concurrent']:.1f} tok/s",
    }
    for label in ("bf16", "int8"):
        share, prefix = agreement(tokens["fp32"], tokens[label])
        for kind, what in (
            ("single", "single stream"),
            ("concurrent", f"{CONCURRENCY} concurrent"),
        ):
            ratio = m[f"{label}_{kind}"] / m[f"fp32_{kind}"]
            measurements[f"{label}, {what}"] = (
                f"{m[f'{label}_{kind}']:.1f} tok/s ({ratio:.2f}x fp32)"
            )
            targets.append(
                Target(f"{label} {what} / fp32 (keep the option only if it wins)", ratio, 1.0, ">=")
            )
        measurements[f"{label} greedy agreement with fp32 (random weights: reported only)"] = (
            f"{share:.0%} of positions; first difference after {prefix:.1f} tokens on average; "
            f"top token fed float32's tokens: {forced[label]:.0%}"
        )
    measurements["machine load (1-min average, start / end)"] = (
        f"{load_before:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    measurements["settings"] = (
        f"{NEW_TOKENS} new tokens, greedy, median of {REPEATS} rounds after one warm-up, "
        "variants alternating within each round"
    )
    save(
        "quantize",
        "Quantised weights: int8 and bfloat16 vs float32",
        measurements,
        targets,
        samples,
    )
    return targets
