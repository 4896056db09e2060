"""A models TOML asking for int8 weights, through a live server and the openai SDK; a bad
value stops `llmserver serve` at start naming the model and the field."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import AsyncOpenAI

from livesupport import LiveServer, free_port, running_server, server_env, spawn_server

pytestmark = [pytest.mark.slow, pytest.mark.torch]

MODEL = "demo-int8"


@pytest.fixture(scope="module")
def server(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("int8")
    models = root / "models.toml"
    models.write_text(
        f'[[models]]\nid = "{MODEL}"\nbackend = "torch"\nsource = "{demo_model_dir}"\n'
        'device = "cpu"\nquantize = "int8"\ncontext_length = 512\nmax_batch_size = 4\n'
    )
    with running_server(root, demo_model_dir, LLMSERVER_MODELS_FILE=str(models)) as live:
        yield live


async def test_concurrent_chats_on_an_int8_model(server: LiveServer) -> None:
    client = AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key=server.user_key, max_retries=0)
    prompts = [f"Tell me about the number {n}" for n in range(4)]

    async def chat(text: str) -> tuple[str, int]:
        answer = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": text}],
            max_tokens=12,
            temperature=0,
            extra_headers={"Cache-Control": "no-cache"},  # each answer from the model
        )
        assert answer.usage is not None
        return answer.choices[0].message.content or "", answer.usage.completion_tokens

    try:
        # Greedy texts are not compared with each alone: one activation scale per int8
        # step makes a row's text depend on its batch-mates (README "Models").
        answers = await asyncio.gather(*(chat(p) for p in prompts))
    finally:
        await client.close()
    assert all(text and 0 < tokens <= 12 for text, tokens in answers)

    admin = {"Authorization": f"Bearer {server.admin_key}"}
    models = httpx.get(f"{server.base_url}/admin/models", headers=admin).json()["data"]
    details = next(m for m in models if m["id"] == MODEL)["details"]
    assert (details["quantize"], details["dtype"], details["max_batch_size"]) == (
        "int8",
        "float32",
        "4",
    )


def test_a_bad_quantize_value_stops_the_server_naming_model_and_field(
    demo_model_dir: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models.toml"
    models.write_text(
        f'[[models]]\nid = "bad"\nbackend = "torch"\nsource = "{demo_model_dir}"\n'
        'quantize = "int4"\n'
    )
    env = server_env(
        f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        demo_model_dir,
        LLMSERVER_MODELS_FILE=str(models),
    )
    log = tmp_path / "server.log"
    process = spawn_server(env, log, free_port())
    try:
        assert process.wait(timeout=60) != 0
    finally:
        if process.poll() is None:
            process.kill()
    assert "('bad'): field 'quantize' must be one of none, int8, not 'int4'" in log.read_text()
