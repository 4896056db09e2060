"""Clients looping 1 MB prompts do not stall the server: ``/healthz`` stays fast.

Two paths keep the event loop free: a prompt whose length alone proves it too long for
the model is refused without tokenizing (``demo-tiny-llama``, 512 tokens of context);
one that may fit is tokenized on a thread (``demo-wide``: the same model declared with a
context of a million tokens, so only the real count can refuse it). ``make soak`` runs
longer with more clients.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from integration.reliability.faultkit import SOAK, bearer, create_key, start_servers
from livesupport import TEST_SECRET, free_port, issue_keys, migrate, server_env, stop_server

pytestmark = [pytest.mark.slow, pytest.mark.torch]

CLIENTS, SECONDS = (6, 30.0) if SOAK else (2, 4.0)
PROMPT_CHARS = 1_000_000 - 300  # the body stays under the 1 MiB limit
HEALTHZ_P50_MS = 50
NONCE = "n" * 32


@dataclass
class Server:
    url: str
    admin_key: str


@pytest.fixture(scope="module")
def server(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("big-prompts")
    models = root / "models.toml"
    models.write_text(
        f'[[models]]\nid = "demo-wide"\nbackend = "torch"\nsource = "{demo_model_dir}"\n'
        "context_length = 1000000\n"
    )
    database_url = f"sqlite+aiosqlite:///{root / 'llmserver.db'}"
    env = server_env(
        database_url, demo_model_dir, LLMSERVER_MODELS_FILE=str(models), LLMSERVER_TORCH_THREADS="1"
    )
    migrate(database_url)
    keys = asyncio.run(issue_keys(database_url, TEST_SECRET))
    port = free_port()
    [process] = start_servers([env], [root / "server.log"], [port])
    yield Server(f"http://127.0.0.1:{port}", keys.admin)
    stop_server(process)


async def _send_big_prompts(
    client: httpx.AsyncClient, key: str, model: str, until: float
) -> list[httpx.Response]:
    # Encoded once, then made unique per request (no memo or cache may answer it): building
    # a megabyte of JSON each time would stall this test's own loop and its probes.
    content = NONCE + " lorem ipsum" * (PROMPT_CHARS // 12)
    message = {"role": "user", "content": content}
    body = json.dumps({"model": model, "messages": [message], "max_tokens": 4}).encode()
    headers = bearer(key) | {"content-type": "application/json"}
    answers = []
    while time.monotonic() < until:
        unique = body.replace(NONCE.encode(), uuid.uuid4().hex.encode(), 1)
        answers.append(await client.post("/v1/chat/completions", headers=headers, content=unique))
    return answers


async def _healthz_latencies(client: httpx.AsyncClient, until: float) -> list[float]:
    """A probe every 20 ms on a fixed schedule, as a load balancer's health checks come:
    a stalled server keeps every probe of the stall waiting, not just one."""

    async def probe() -> float:
        started = time.monotonic()
        response = await client.get("/healthz")
        assert response.status_code == 200
        return time.monotonic() - started

    probes = []
    while time.monotonic() < until:
        probes.append(asyncio.create_task(probe()))
        await asyncio.sleep(0.02)
    return list(await asyncio.gather(*probes))


@pytest.mark.parametrize(
    ("model", "refusal"),
    [("demo-tiny-llama", "has at least"), ("demo-wide", "maximum context length is 512")],
)
async def test_healthz_stays_fast_while_clients_send_megabyte_prompts(
    server: Server, model: str, refusal: str
) -> None:
    created = await create_key(server.url, server.admin_key, f"big-{model}", rpm_limit=10**9)
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=60) as client,
        httpx.AsyncClient(base_url=server.url, timeout=60) as probe,
    ):
        await probe.get("/healthz")  # connect before the clock starts
        until = time.monotonic() + SECONDS
        senders = asyncio.gather(
            *(_send_big_prompts(client, created["key"], model, until) for _ in range(CLIENTS))
        )
        latencies = await _healthz_latencies(probe, until)
        sent = await senders
    answers = [a for client_answers in sent for a in client_answers]
    p50_ms = statistics.median(latencies) * 1000
    print(
        f"\n{model}: {CLIENTS} clients sent {len(answers)} 1 MB prompts in {SECONDS:g} s; "
        f"/healthz p50 {p50_ms:.1f} ms, max {max(latencies) * 1000:.0f} ms "
        f"over {len(latencies)} probes"
    )
    assert answers
    assert {a.status_code for a in answers} == {400}
    assert all(refusal in a.json()["error"]["message"] for a in answers)
    assert {a.json()["error"]["code"] for a in answers} == {"context_length_exceeded"}
    assert p50_ms < HEALTHZ_P50_MS
