"""The official openai SDK (and langchain-openai) against a live server process."""

from __future__ import annotations

import uuid

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam
from pydantic import SecretStr

from livesupport import LiveServer

MODEL = "demo-tiny-llama"

pytestmark = pytest.mark.slow


def client(live_server: LiveServer, key: str | None = None) -> OpenAI:
    return OpenAI(
        base_url=live_server.base_url + "/v1",
        api_key=key or live_server.user_key,
        max_retries=0,
        timeout=60,
    )


def unique_prompt() -> str:
    return f"Say something about {uuid.uuid4().hex}"


def test_chat_completion(live_server: LiveServer) -> None:
    reply = client(live_server).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": unique_prompt()}],
        max_tokens=8,
        temperature=0.7,
    )
    assert reply.object == "chat.completion"
    assert reply.model == MODEL
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason in {"stop", "length"}
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 0
    assert 0 < reply.usage.completion_tokens <= 8
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_alias_resolves_to_the_model(live_server: LiveServer) -> None:
    reply = client(live_server).chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )
    assert reply.model == MODEL


def test_text_completion(live_server: LiveServer) -> None:
    reply = client(live_server).completions.create(
        model=MODEL, prompt=unique_prompt(), max_tokens=6, temperature=0.5
    )
    assert reply.object == "text_completion"
    assert reply.usage is not None
    assert 0 < reply.usage.completion_tokens <= 6
    assert isinstance(reply.choices[0].text, str)


def test_streaming_with_usage(live_server: LiveServer) -> None:
    stream = client(live_server).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": unique_prompt()}],
        max_tokens=12,
        temperature=0.8,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(finishes) == 1
    assert len(usage) == 1
    assert usage[0].completion_tokens > 0
    assert len(chunks) >= 3
    assert isinstance(text, str)


def test_streamed_text_equals_non_streamed_text_for_greedy(live_server: LiveServer) -> None:
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": unique_prompt()}]
    c = client(live_server)
    # no-cache on both, so the stream really runs the model instead of replaying the cache
    plain = c.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=10,
        temperature=0,
        extra_headers={"Cache-Control": "no-cache"},
    )
    streamed = c.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=10,
        temperature=0,
        stream=True,
        extra_headers={"Cache-Control": "no-cache"},
    )
    text = "".join(ch.choices[0].delta.content or "" for ch in streamed if ch.choices)
    assert text == plain.choices[0].message.content


def test_models_list_and_retrieve(live_server: LiveServer) -> None:
    c = client(live_server)
    ids = [m.id for m in c.models.list()]
    assert MODEL in ids
    assert c.models.retrieve(MODEL).id == MODEL


def test_bad_key_is_401(live_server: LiveServer) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        client(live_server, "llms_abcdefghijkl_" + "x" * 43).models.list()
    assert caught.value.status_code == 401
    assert caught.value.body["code"] == "invalid_api_key"  # type: ignore[index]


def test_unknown_model_is_404(live_server: LiveServer) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client(live_server).chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]


def test_cache_hit_on_repeat(live_server: LiveServer) -> None:
    c = client(live_server)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": unique_prompt()}]
    first = c.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, max_tokens=8, temperature=0
    )
    second = c.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, max_tokens=8, temperature=0
    )
    bypass = c.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=messages,
        max_tokens=8,
        temperature=0,
        extra_headers={"Cache-Control": "no-cache"},
    )
    assert first.headers["x-cache"] == "MISS"
    assert second.headers["x-cache"] == "HIT"
    assert bypass.headers["x-cache"] == "BYPASS"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content


def test_rate_limit_429_with_retry_after(live_server: LiveServer) -> None:
    created = httpx.post(
        live_server.base_url + "/admin/keys",
        headers={"Authorization": f"Bearer {live_server.admin_key}"},
        json={"name": "rpm-2", "role": "user", "rpm_limit": 2},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    c = client(live_server, created.json()["key"])
    c.models.retrieve(MODEL)  # models routes are not rate limited
    for _ in range(2):
        c.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=1
        )
    with pytest.raises(openai.RateLimitError) as caught:
        c.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=1
        )
    response = caught.value.response
    assert response.status_code == 429
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert response.headers["x-ratelimit-limit-requests"] == "2"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert caught.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]


def test_langchain_chat_openai_invoke_and_stream(live_server: LiveServer) -> None:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(
        model=MODEL,
        base_url=live_server.base_url + "/v1",
        api_key=SecretStr(live_server.user_key),
        max_completion_tokens=6,  # the field max_tokens under its constructor name
        temperature=0.3,
        max_retries=0,
    )
    message = chat.invoke("Hello there")
    assert isinstance(message.content, str)
    assert message.usage_metadata is not None
    assert message.usage_metadata["output_tokens"] > 0
    pieces = list(chat.stream("Tell me more"))
    assert len(pieces) >= 2
