"""The remote HTTP backend against a real upstream: a second LLM Server process.

Gateway B serves a model `upstream-demo` whose backend is `http`, pointing at the live
server A; B's callers use B's keys, and B calls A with A's key from an env variable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from openai import OpenAI
from pydantic import BaseModel, Field

from livesupport import IssuedKeys, LiveServer, running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gateway_b(
    live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory, demo_model_dir: Path
) -> Iterator[tuple[str, IssuedKeys]]:
    root = tmp_path_factory.mktemp("gateway-b")
    models = root / "models.toml"
    models.write_text(
        "[[models]]\n"
        'id = "upstream-demo"\n'
        'backend = "http"\n'
        f'source = "{live_server.base_url}"\n'
        'upstream_model = "demo-tiny-llama"\n'
        'api_key_env = "UPSTREAM_KEY"\n'
        "context_length = 512\n"
    )
    with running_server(
        root,
        demo_model_dir,
        LLMSERVER_PROFILE="none",
        LLMSERVER_MODELS_FILE=str(models),
        UPSTREAM_KEY=live_server.admin_key,
    ) as server:
        yield server.base_url, server.keys
    assert live_server.admin_key not in server.logs()


def test_chat_through_a_remote_upstream(gateway_b: tuple[str, IssuedKeys]) -> None:
    base, keys = gateway_b
    client = OpenAI(base_url=base + "/v1", api_key=keys.user, max_retries=0)
    reply = client.chat.completions.create(
        model="upstream-demo",
        messages=[{"role": "user", "content": "hello upstream"}],
        max_tokens=6,
        temperature=0,
    )
    assert reply.model == "upstream-demo"
    assert reply.usage is not None
    assert 0 < reply.usage.completion_tokens <= 6
    assert [m.id for m in client.models.list()] == ["upstream-demo"]


def test_streaming_passthrough(gateway_b: tuple[str, IssuedKeys]) -> None:
    base, keys = gateway_b
    client = OpenAI(base_url=base + "/v1", api_key=keys.user, max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="upstream-demo",
            messages=[{"role": "user", "content": "stream please"}],
            max_tokens=8,
            temperature=0.9,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 2
    assert any(c.usage is not None and c.usage.completion_tokens > 0 for c in chunks)


def test_text_completion_through_a_remote_upstream(gateway_b: tuple[str, IssuedKeys]) -> None:
    base, keys = gateway_b
    client = OpenAI(base_url=base + "/v1", api_key=keys.user, max_retries=0)
    reply = client.completions.create(
        model="upstream-demo", prompt="Once upon a time", max_tokens=5, temperature=0.5
    )
    assert reply.usage is not None
    assert 0 < reply.usage.completion_tokens <= 5


class City(BaseModel):
    name: str = Field(max_length=10)
    zip: str = Field(pattern=r"^[0-9]{5}$")
    size: Literal["small", "big"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_structured_output_through_a_remote_upstream(
    gateway_b: tuple[str, IssuedKeys], stream: bool
) -> None:
    """B passes ``response_format`` to A (whose torch model enforces it) and, as the SDK asks
    for ``strict``, validates A's answer before handing it on."""
    base, keys = gateway_b
    client = OpenAI(base_url=base + "/v1", api_key=keys.user, max_retries=0, timeout=120)
    ask: dict[str, Any] = {
        "model": "upstream-demo",
        "messages": [{"role": "user", "content": "A city, please"}],
        "response_format": City,
        "max_tokens": 120,
        "temperature": 0,
    }
    if stream:
        with client.chat.completions.stream(**ask) as events:
            completion = events.get_final_completion()
    else:
        completion = client.chat.completions.parse(**ask)
    assert isinstance(completion.choices[0].message.parsed, City)
