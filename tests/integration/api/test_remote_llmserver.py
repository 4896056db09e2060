"""The remote HTTP backend against a real upstream: a second LLM Server process.

Gateway B serves a model `upstream-demo` whose backend is `http`, pointing at the live
server A; B's callers use B's keys, and B calls A with A's key from an env variable.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from openai import OpenAI
from pydantic import BaseModel, Field

from livesupport import IssuedKeys, LiveServer, closed_after_test, running_server

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
    client = closed_after_test(OpenAI(base_url=base + "/v1", api_key=keys.user, max_retries=0))
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
    client = closed_after_test(OpenAI(base_url=base + "/v1", api_key=keys.user, max_retries=0))
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
    client = closed_after_test(OpenAI(base_url=base + "/v1", api_key=keys.user, max_retries=0))
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
    client = closed_after_test(
        OpenAI(base_url=base + "/v1", api_key=keys.user, max_retries=0, timeout=120)
    )
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


def approx(value: float) -> Any:
    """A log probability the upstream computed in another batch than the one compared
    with: equal to float32 rounding."""
    return pytest.approx(value, abs=1e-4)


def shape(value: Any) -> Any:
    """``value`` with every float as ``approx``."""
    if isinstance(value, float):
        return approx(value)
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return value


def test_logprobs_and_n_pass_through_both_ways(
    live_server: LiveServer, gateway_b: tuple[str, IssuedKeys]
) -> None:
    """The request's ``n`` and ``logprobs`` reach the upstream, and its choices and log
    probabilities come back whole: the same as the upstream's own answer."""
    base, keys = gateway_b
    through_b = closed_after_test(OpenAI(base_url=base + "/v1", api_key=keys.user, max_retries=0))
    direct = closed_after_test(
        OpenAI(base_url=live_server.base_url + "/v1", api_key=live_server.user_key)
    )
    ask: dict[str, Any] = {
        "messages": [{"role": "user", "content": f"pass {uuid.uuid4().hex}"}],
        "max_tokens": 6,
        "temperature": 1.0,
        "seed": 21,
        "n": 2,
        "logprobs": True,
        "top_logprobs": 3,
        "extra_body": {"cache": False},
    }
    remote = through_b.chat.completions.create(model="upstream-demo", **ask)
    local = direct.chat.completions.create(model="demo-tiny-llama", **ask)
    assert [c.model_dump() for c in remote.choices] == [
        shape(c.model_dump()) for c in local.choices
    ]
    assert remote.usage is not None
    assert local.usage is not None
    assert remote.usage.completion_tokens == local.usage.completion_tokens

    streamed: dict[int, list[tuple[str, float, int]]] = {0: [], 1: []}
    texts = {0: "", 1: ""}
    for chunk in through_b.chat.completions.create(model="upstream-demo", stream=True, **ask):
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            for entry in (choice.logprobs.content or []) if choice.logprobs else []:
                streamed[choice.index].append((entry.token, entry.logprob, len(entry.top_logprobs)))
    for choice in local.choices:
        assert texts[choice.index] == choice.message.content
        assert choice.logprobs is not None
        assert choice.logprobs.content is not None
        assert streamed[choice.index] == [
            (e.token, approx(e.logprob), len(e.top_logprobs)) for e in choice.logprobs.content
        ]


def test_text_logprobs_pass_through(
    live_server: LiveServer, gateway_b: tuple[str, IssuedKeys]
) -> None:
    base, keys = gateway_b
    through_b = closed_after_test(OpenAI(base_url=base + "/v1", api_key=keys.user, max_retries=0))
    direct = closed_after_test(
        OpenAI(base_url=live_server.base_url + "/v1", api_key=live_server.user_key)
    )
    ask: dict[str, Any] = {
        "prompt": f"text {uuid.uuid4().hex}",
        "max_tokens": 5,
        "temperature": 0,
        "logprobs": 2,
        "extra_body": {"cache": False},
    }
    remote = through_b.completions.create(model="upstream-demo", **ask)
    local = direct.completions.create(model="demo-tiny-llama", **ask)
    assert remote.choices[0].logprobs is not None
    assert local.choices[0].logprobs is not None
    assert remote.choices[0].logprobs.model_dump() == shape(local.choices[0].logprobs.model_dump())
    assert remote.choices[0].text == local.choices[0].text
