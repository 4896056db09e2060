"""Prefill benchmark: prefix caching and chunked prefill of the torch backend, on the ~100M
bench model.

Prefix cache: the time to first token of a request whose ~1,000-token system prompt an
earlier request computed (warm) against one whose system prompt is new (cold), cold and
warm alternating in one backend.

Chunked prefill: 7 streams decode; the gaps between their tokens (inter-token latency,
ITL) are measured first alone (the baseline), then while a ~2,000-token prompt arrives and
prefills, in the same run, for each candidate ``LLMSERVER_PREFILL_CHUNK_TOKENS`` (the
tokens of a pass, the streams' included; the chunks shrink as they sit later in the prompt)
and for no chunking; it reports the largest candidate that keeps the p99 within 2x the
baseline median (README, "Prefix caching and chunked prefill", weighs that against the
long prompt's time to first token for the default).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench.inference_bench import PROMPTS, model_dir
from bench.report import Target, progress, save

if TYPE_CHECKING:
    from llmserver.adapters.inference.torch_backend import TorchBackend
    from llmserver.domain.inference import Prompt, StreamEvent
    from llmserver.domain.registry import ModelSpec

SYSTEM_TOKENS = 1000
LONG_TOKENS = 2000
STREAMS = 7
TTFT_ROUNDS = 3
CHUNKS = (16, 24, 32)
TIMEOUT_S = 3600.0
"""Small chunks under a loaded machine take minutes over a long prompt."""
UNCHUNKED = 4096
BASELINE_STEPS = 16
THREADS = 1
"""One torch thread per backend: on a machine other work shares (2 cores here), a torch
pool of several threads stalls whenever one of them waits for a core, which would swamp
the ratios measured; the ratios compare costs that scale alike with threads."""
ITL_LIMIT = 2.0
STORY = (
    "the clockmaker kept a ledger of every gear he cut and every spring he wound, and each "
    "evening he read it aloud to the cat, who listened with great patience"
)


def run() -> list[Target]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from llmserver.adapters.inference.demo_model import build_demo_model

    path = build_demo_model(model_dir(), size="bench", progress=progress)
    return asyncio.run(_measure(path))


def _text(tokenizer: object, tokens: int, salt: str) -> str:
    """Text of about ``tokens`` tokens, starting with ``salt`` (so no two share a prefix)."""
    words = [salt]
    while len(tokenizer(" ".join(words)).input_ids) < tokens:  # type: ignore[operator]
        words += STORY.split()
    ids = tokenizer(" ".join(words)).input_ids[:tokens]  # type: ignore[operator]
    return str(tokenizer.decode(ids, skip_special_tokens=True))  # type: ignore[attr-defined]


async def _ttft(backend: TorchBackend, prompt: Prompt) -> float:
    from llmserver.domain.inference import GenerationParams

    started = time.perf_counter()
    stream = backend.stream(prompt, GenerationParams(max_tokens=1, temperature=0.0))
    await anext(stream)
    elapsed = time.perf_counter() - started
    await stream.aclose()  # type: ignore[attr-defined]
    return elapsed


async def _prefix_cache(spec: ModelSpec) -> tuple[dict[str, str], list[Target], dict[str, object]]:
    from llmserver.adapters.inference.torch_backend import TorchBackend
    from llmserver.domain.inference import ChatMessage, Prompt

    backend = TorchBackend(spec, threads=THREADS, max_batch_size=8, prefix_cache_mb=256)
    try:

        def chat(system: str, question: str) -> Prompt:
            return Prompt(messages=(ChatMessage("system", system), ChatMessage("user", question)))

        cold: list[float] = []
        warm: list[float] = []
        prompt_tokens = 0
        for n in range(TTFT_ROUNDS + 1):  # the first round warms up and is discarded
            system = _text(backend.tokenizer, SYSTEM_TOKENS, f"Session {n}.")
            first = chat(system, PROMPTS[n % len(PROMPTS)])
            prompt_tokens = await backend.count_tokens(first)
            cold_s = await _ttft(backend, first)
            warm_s = await _ttft(backend, chat(system, PROMPTS[(n + 1) % len(PROMPTS)]))
            if n:
                cold.append(cold_s)
                warm.append(warm_s)
                progress(f"TTFT cold {cold_s * 1000:.0f} ms / warm {warm_s * 1000:.0f} ms")
        stats = backend.status().prefix_cache
        assert stats is not None
    finally:
        await backend.close()
    ratio = statistics.median(warm) / statistics.median(cold)
    per_token = stats.bytes / max(1, stats.blocks * 16)
    measurements = {
        "prefix cache: prompt": f"{prompt_tokens} tokens, of which ~{SYSTEM_TOKENS} a shared "
        "system prompt",
        "prefix cache: TTFT cold / warm (p50)": f"{statistics.median(cold) * 1000:.0f} ms / "
        f"{statistics.median(warm) * 1000:.0f} ms",
        "prefix cache: held": f"{stats.blocks} blocks, {stats.bytes / 2**20:.1f} MiB "
        f"({per_token / 1024:.0f} KiB per token), {stats.evictions} evictions, "
        f"{stats.hit_tokens} hit tokens",
    }
    target = Target("prefix cache: warm TTFT / cold TTFT (p50)", ratio, 0.25, "<=")
    return measurements, [target], {"ttft_cold_s": cold, "ttft_warm_s": warm}


@dataclass
class _Stream:
    events: list[tuple[float, int]] = field(default_factory=list)
    """(arrival time, tokens) of each text delta."""
    ended: bool = False
    """It finished (an end-of-text token can come before ``max_tokens``)."""

    def count(self) -> float:
        return float("inf") if self.ended else len(self.events)

    def gaps(self, start: float, end: float) -> list[float]:
        """Per-token gaps between deltas that overlap (start, end): a stall that began
        before ``end`` counts, however late its token arrived."""
        out = []
        for (before, _), (at, tokens) in itertools.pairwise(self.events):
            if at > start and before < end:
                out += [(at - before) / tokens] * tokens
        return out


async def _follow(stream: AsyncIterator[StreamEvent], into: _Stream) -> None:
    from llmserver.domain.inference import TextDelta

    try:
        async for event in stream:
            if isinstance(event, TextDelta):
                into.events.append((time.perf_counter(), event.tokens))
    finally:
        into.ended = True


def _p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


async def _itl(spec: ModelSpec, chunk: int, round_: int) -> dict[str, float]:
    """Baseline ITL of ``STREAMS`` streams, then their ITL while a long prompt prefills."""
    from llmserver.adapters.inference.torch_backend import TorchBackend
    from llmserver.domain.inference import GenerationParams, Prompt

    backend = TorchBackend(
        spec,
        threads=THREADS,
        max_batch_size=8,
        request_timeout_s=TIMEOUT_S,
        prefix_cache_mb=0,
        prefill_chunk_tokens=chunk,
    )
    streams = [_Stream() for _ in range(STREAMS)]
    params = GenerationParams(max_tokens=1000, temperature=0.0)
    tasks = [
        asyncio.create_task(_follow(backend.stream(Prompt(text=p), params), s))
        for p, s in zip(PROMPTS, streams, strict=False)
    ]
    try:
        long_prompt = Prompt(text=_text(backend.tokenizer, LONG_TOKENS, f"Document {round_}."))
        while min(s.count() for s in streams) < 3:
            await asyncio.sleep(0.01)
        start = time.perf_counter()
        while min(s.count() for s in streams) < 3 + BASELINE_STEPS:
            await asyncio.sleep(0.01)
        submitted = time.perf_counter()
        ttft = await _ttft(backend, long_prompt)
        first_token = time.perf_counter()
        # Every stream's next token, so the gap around the end of the prefill is complete.
        live = [(s, len(s.events)) for s in streams if not s.ended]
        while any(not s.ended and len(s.events) == n for s, n in live):
            await asyncio.sleep(0.01)
        baseline = [g for s in streams for g in s.gaps(start, submitted)]
        during = [g for s in streams for g in s.gaps(submitted, first_token)]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await backend.close()
    median = statistics.median(baseline)
    return {
        "baseline_median_s": median,
        "baseline_p99_s": _p99(baseline),
        "during_median_s": statistics.median(during),
        "during_p99_s": _p99(during),
        "during_samples": len(during),
        "long_ttft_s": ttft,
        "ratio": _p99(during) / median,
        "chunk_first": backend._prefill.beside(STREAMS, 0),
        "chunk_last": backend._prefill.beside(STREAMS, LONG_TOKENS - 1),
    }


async def _chunking(spec: ModelSpec) -> tuple[dict[str, str], list[Target], dict[str, object]]:
    results: dict[int, dict[str, float]] = {}
    for n, chunk in enumerate((*CHUNKS, UNCHUNKED)):
        label = "unchunked" if chunk == UNCHUNKED else f"{chunk} tokens a pass"
        progress(f"{STREAMS} streams decoding, a {LONG_TOKENS}-token prompt arrives: {label}")
        results[chunk] = r = await _itl(spec, chunk, n)
        progress(
            f"{label}: ITL p50 alone {r['baseline_median_s'] * 1000:.0f} ms, p99 during "
            f"prefill {r['during_p99_s'] * 1000:.0f} ms ({r['ratio']:.2f}x), long prompt TTFT "
            f"{r['long_ttft_s']:.2f} s"
        )
    fitting = [c for c in CHUNKS if results[c]["ratio"] <= ITL_LIMIT]
    chosen = max(fitting) if fitting else min(CHUNKS)
    measurements = {
        f"chunked prefill, {label}": (
            f"ITL alone p50 {r['baseline_median_s'] * 1000:.0f} / p99 "
            f"{r['baseline_p99_s'] * 1000:.0f} ms; while the long prompt prefills p50 "
            f"{r['during_median_s'] * 1000:.0f} / p99 {r['during_p99_s'] * 1000:.0f} ms "
            f"(p99 / p50 alone {r['ratio']:.2f}x, {r['during_samples']:.0f} gaps); "
            f"long prompt TTFT {r['long_ttft_s']:.2f} s"
        )
        for chunk, r in results.items()
        for label in [
            "none"
            if chunk == UNCHUNKED
            else f"{chunk} tokens a pass (chunks of {r['chunk_first']:.0f} to "
            f"{r['chunk_last']:.0f} beside {STREAMS} rows)"
        ]
    }
    measurements["chunked prefill: largest budget within the target"] = (
        f"{chosen} tokens" if fitting else f"none ({min(CHUNKS)} is the smallest tried)"
    )
    targets = [
        Target(
            f"chunked prefill ({chosen} tokens): ITL p99 during a {LONG_TOKENS}-token prefill "
            f"/ ITL p50 of {STREAMS} streams without it",
            results[chosen]["ratio"],
            ITL_LIMIT,
            "<=",
        )
    ]
    return measurements, targets, {str(c): r for c, r in results.items()}


async def _measure(path: Path) -> list[Target]:
    import torch

    from llmserver.domain.registry import BackendKind, ModelSpec

    spec = ModelSpec(
        id="bench", backend=BackendKind.TORCH, source=str(path), device="cpu", dtype="float32"
    )
    load_before = os.getloadavg()[0]
    progress("prefix cache: cold and warm time to first token")
    prefix_m, prefix_t, prefix_raw = await _prefix_cache(spec)
    progress("chunked prefill: inter-token latency of running streams")
    chunk_m, chunk_t, chunk_raw = await _chunking(spec)
    measurements = {
        "model": f"random Llama (bench size), fp32, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}",
        **prefix_m,
        **chunk_m,
        "machine load (1-min average, start / end)": f"{load_before:.1f} / "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other work skews every ratio)",
    }
    targets = prefix_t + chunk_t
    save(
        "prefill",
        "Prefill: prefix caching and chunked prefill (torch backend)",
        measurements,
        targets,
        {"prefix_cache": prefix_raw, "chunked_prefill": chunk_raw},
    )
    return targets
