"""Inference through the HTTP server vs raw transformers, on the ~100M bench model (issue 5).

The server runs as its own process (`llmserver serve`, one model, batch size 8); the raw
baselines run in this process on the same weights while the server idles, and the two
alternate so drift in machine load hits both sides alike. Requests are greedy and bypass
the cache, so the server generates exactly what ``model.generate`` generates.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from bench.inference_bench import CONCURRENCY, NEW_TOKENS, PROMPTS, REPEATS, TTFT_REPEATS, model_dir
from bench.raw import RawModel
from bench.report import Target, progress, save
from bench.support import free_port, issue_key

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-server-secret-" + "s" * 32
MODEL = "bench-llama"


def start_server(
    tmp: Path, path: Path, *, models_toml: str | None = None
) -> tuple[subprocess.Popen[bytes], str, str]:
    """The server on the bench chat model at ``path``, or on the models ``models_toml``
    declares; returns the process, its base URL and an admin key."""
    models = tmp / "models.toml"
    models.write_text(
        models_toml
        or f'[[models]]\nid = "{MODEL}"\nbackend = "torch"\nsource = "{path}"\n'
        'device = "cpu"\ndtype = "float32"\ncontext_length = 2048\n'
    )
    database_url = f"sqlite+aiosqlite:///{tmp}/bench.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMSERVER_")}
    env.update(
        LLMSERVER_SERVER_SECRET=SECRET,
        LLMSERVER_DATABASE_URL=database_url,
        LLMSERVER_PROFILE="none",
        LLMSERVER_MODELS_FILE=str(models),
        LLMSERVER_MAX_BATCH_SIZE=str(CONCURRENCY),
        LLMSERVER_LOG_FORMAT="json",
        HF_HUB_OFFLINE="1",
    )
    subprocess.run(
        [sys.executable, "-m", "llmserver.cli", "migrate"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    key = asyncio.run(issue_key(database_url, SECRET, role="admin"))
    port = free_port()
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmserver.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((tmp / "server.log").read_text())
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return proc, base, key
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise RuntimeError("the bench server did not become ready")


def body(prompt: str, *, stream: bool = False, max_tokens: int = NEW_TOKENS) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    }


def run() -> list[Target]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from llmserver.adapters.inference.demo_model import build_demo_model

    path = build_demo_model(model_dir(), size="bench", progress=progress)
    with tempfile.TemporaryDirectory() as tmp:
        progress("starting the server on the bench model")
        proc, base, key = start_server(Path(tmp), path)
        try:
            return asyncio.run(_measure(path, base, key))
        finally:
            proc.terminate()
            proc.wait(timeout=60)


async def _measure(path: Path, base: str, key: str) -> list[Target]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmserver.adapters.inference.prompts import encode_prompt
    from llmserver.domain.inference import ChatMessage, Prompt

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()  # type: ignore[no-untyped-call]
    ids = [
        encode_prompt(tokenizer, Prompt(messages=(ChatMessage("user", p),)), MODEL) for p in PROMPTS
    ]
    raw = RawModel(model, tokenizer, NEW_TOKENS)
    headers = {"Authorization": f"Bearer {key}", "Cache-Control": "no-cache"}
    client = httpx.AsyncClient(base_url=base, headers=headers, timeout=300)

    async def chat(prompt: str) -> int:
        response = await client.post("/v1/chat/completions", json=body(prompt))
        response.raise_for_status()
        return int(response.json()["usage"]["completion_tokens"])

    async def server_single() -> float:
        started = time.perf_counter()
        tokens = await chat(PROMPTS[0])
        return tokens / (time.perf_counter() - started)

    async def server_concurrent() -> float:
        started = time.perf_counter()
        tokens = await asyncio.gather(*(chat(p) for p in PROMPTS[:CONCURRENCY]))
        return sum(tokens) / (time.perf_counter() - started)

    async def server_ttft() -> float:
        started = time.perf_counter()
        elapsed: float | None = None
        async with client.stream(
            "POST", "/v1/chat/completions", json=body(PROMPTS[0], stream=True, max_tokens=2)
        ) as response:
            async for line in response.aiter_lines():
                content = line.startswith("data: ") and '"content":"' in line
                if elapsed is None and content and '"content":""' not in line:
                    elapsed = time.perf_counter() - started
        if elapsed is None:
            raise RuntimeError("the stream produced no content")
        return elapsed

    samples: dict[str, list[float]] = {}

    async def alternate(
        label_a: str,
        a: Callable[[], float],
        label_b: str,
        b: Callable[[], Awaitable[float]],
        repeats: int,
    ) -> None:
        for i in range(repeats + 1):  # the first round warms up and is discarded
            first, second = a(), await b()
            if i:
                samples.setdefault(label_a, []).append(first)
                samples.setdefault(label_b, []).append(second)
                progress(f"{label_a} {first:.4g} / {label_b} {second:.4g} (round {i}/{repeats})")

    load_before = os.getloadavg()[0]
    try:
        progress(f"single stream through HTTP, {NEW_TOKENS} new tokens, greedy")
        await alternate(
            "raw_single", lambda: raw.single(ids[0]), "server_single", server_single, REPEATS
        )
        progress(f"{CONCURRENCY} concurrent HTTP clients vs raw left-padded batch")
        await alternate(
            "raw_batch",
            lambda: raw.batch(ids[:CONCURRENCY]),
            "server_concurrent",
            server_concurrent,
            REPEATS,
        )
        progress("time to first token through the streaming path vs raw prefill")
        await alternate(
            "raw_prefill_s", lambda: raw.prefill(ids[0]), "server_ttft_s", server_ttft, TTFT_REPEATS
        )
    finally:
        await client.aclose()

    m = {k: statistics.median(v) for k, v in samples.items()}
    targets = [
        Target(
            "server single stream / raw generate", m["server_single"] / m["raw_single"], 0.95, ">="
        ),
        Target(
            f"server {CONCURRENCY} concurrent / server single",
            m["server_concurrent"] / m["server_single"],
            3.0,
            ">=",
        ),
        Target(
            f"server {CONCURRENCY} concurrent / raw batch {CONCURRENCY}",
            m["server_concurrent"] / m["raw_batch"],
            0.8,
            ">=",
        ),
        Target(
            "server TTFT - raw prefill (ms, p50)",
            (m["server_ttft_s"] - m["raw_prefill_s"]) * 1000,
            5.0,
            "<=",
        ),
    ]
    measurements = {
        "model": f"random Llama, {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M params, "
        f"fp32, torch {torch.__version__}",
        "raw generate, single stream": f"{m['raw_single']:.1f} tok/s",
        "server, single stream (HTTP)": f"{m['server_single']:.1f} tok/s",
        f"raw generate, left-padded batch of {CONCURRENCY}": f"{m['raw_batch']:.1f} tok/s",
        f"server, {CONCURRENCY} concurrent HTTP clients": f"{m['server_concurrent']:.1f} tok/s",
        "raw prefill (p50)": f"{m['raw_prefill_s'] * 1000:.1f} ms",
        "server time to first token (p50, streaming)": f"{m['server_ttft_s'] * 1000:.1f} ms",
        "machine load (1-min, start / end)": f"{load_before:.1f} / {os.getloadavg()[0]:.1f}",
        "settings": f"{NEW_TOKENS} new tokens, median of {REPEATS} rounds ({TTFT_REPEATS} for "
        "TTFT) after one warm-up; server and raw alternate; server in its own process",
    }
    save(
        "server_inference",
        "Inference through the HTTP server vs raw transformers",
        measurements,
        targets,
        samples,
    )
    return targets
