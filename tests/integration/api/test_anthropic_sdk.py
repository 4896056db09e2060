"""The official anthropic SDK against a live server process: the Messages API is served
through the same gateway as chat completions (keys, limits, cache, usage, logs)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import anthropic
import httpx
import pytest
from anthropic import Anthropic

from livesupport import LiveServer, closed_after_test

MODEL = "demo-tiny-llama"

pytestmark = pytest.mark.slow

GREEDY = {"temperature": 0}
"""Greedy answers are the cacheable ones."""


def client(live_server: LiveServer, key: str | None = None) -> Anthropic:
    return closed_after_test(
        Anthropic(base_url=live_server.base_url, api_key=key or live_server.user_key, max_retries=0)
    )


def new_key(live_server: LiveServer, **fields: Any) -> tuple[str, str]:
    """A fresh user key with ``fields`` as its limits: (its id, its secret)."""
    created = httpx.post(
        live_server.base_url + "/admin/keys",
        headers={"Authorization": f"Bearer {live_server.admin_key}"},
        json={"name": f"anthropic-{uuid.uuid4().hex[:8]}", "role": "user", **fields},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    return created.json()["details"]["id"], created.json()["key"]


def unique_prompt() -> str:
    return f"Tell me about {uuid.uuid4().hex}"


def test_create_answers_a_message(live_server: LiveServer) -> None:
    message = client(live_server).messages.create(
        model=MODEL,
        system=[{"type": "text", "text": "You are terse."}],
        messages=[{"role": "user", "content": [{"type": "text", "text": unique_prompt()}]}],
        max_tokens=8,
        # This SDK's signature has no sampling parameters any more; the API still takes them.
        extra_body={"temperature": 0.7, "top_p": 0.9, "top_k": 40},
        metadata={"user_id": "user-1"},
        extra_headers={"anthropic-version": "2023-06-01"},
    )
    assert message.type == "message"
    assert message.id.startswith("msg_")
    assert message.role == "assistant"
    assert message.model == MODEL
    assert message.content[0].type == "text"
    assert message.stop_reason in {"end_turn", "max_tokens"}
    assert message.usage.input_tokens > 0
    assert 0 < message.usage.output_tokens <= 8


def test_top_k_reaches_the_sampler(live_server: LiveServer) -> None:
    """At temperature 1, ``top_k: 1`` samples the greedy answer; without it, a sample."""

    def answer(**sampling: Any) -> str:
        message = client(live_server).messages.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Name the moons"}],
            max_tokens=16,
            extra_body=sampling,
        )
        assert message.content[0].type == "text"
        return message.content[0].text

    greedy = answer(temperature=0)
    assert answer(temperature=1.0, top_k=1) == greedy
    assert answer(temperature=1.0) != greedy


def test_a_cut_off_answer_stops_for_max_tokens(live_server: LiveServer) -> None:
    # The sampled demo model's first token may be its end token (or the stop sequence):
    # that answer ends on its own and tests nothing about the cut, so such a try is made
    # again with a new prompt (an answer that runs past the cut is never retried).
    for _ in range(3):
        message = client(live_server).messages.create(
            model=MODEL,
            messages=[{"role": "user", "content": unique_prompt()}],
            max_tokens=1,
            stop_sequences=["\n\n\n"],
        )
        ended = message.stop_reason in ("end_turn", "stop_sequence")
        if not ended or message.usage.output_tokens > 1:
            break
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 1


def test_stream_helper_and_its_final_message(live_server: LiveServer) -> None:
    with client(live_server).messages.stream(
        model=MODEL,
        messages=[{"role": "user", "content": unique_prompt()}],
        max_tokens=12,
        extra_body={"temperature": 0.8},
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) >= 2
    assert final.content[0].type == "text"
    assert final.content[0].text == "".join(pieces)
    assert final.stop_reason in {"end_turn", "max_tokens"}
    assert final.usage.input_tokens > 0
    assert final.usage.output_tokens > 0


def test_raw_stream_has_the_event_sequence(live_server: LiveServer) -> None:
    events = client(live_server).messages.create(
        model=MODEL,
        messages=[{"role": "user", "content": unique_prompt()}],
        max_tokens=4,
        stream=True,
    )
    kinds = [event.type for event in events]
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert set(kinds[2:-3]) == {"content_block_delta"}
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_count_tokens_counts_as_the_quota_does(live_server: LiveServer) -> None:
    c = client(live_server)
    messages: Any = [{"role": "user", "content": unique_prompt()}]
    counted = c.messages.count_tokens(model=MODEL, system="Be brief.", messages=messages)
    answered = c.messages.create(model=MODEL, system="Be brief.", messages=messages, max_tokens=2)
    assert counted.input_tokens == answered.usage.input_tokens > 0


def test_a_cache_hit_replays_as_a_stream(live_server: LiveServer) -> None:
    c = client(live_server)
    messages: Any = [{"role": "user", "content": unique_prompt()}]
    first = c.messages.with_raw_response.create(
        model=MODEL, messages=messages, max_tokens=8, extra_body=GREEDY
    )
    assert first.headers["x-cache"] == "MISS"
    with c.messages.stream(
        model=MODEL, messages=messages, max_tokens=8, extra_body=GREEDY
    ) as stream:
        assert stream.response.headers["x-cache"] == "HIT"
        replayed = stream.get_final_message()
    plain = first.parse()
    assert replayed.content[0].text == plain.content[0].text  # type: ignore[union-attr]
    assert replayed.usage.output_tokens == plain.usage.output_tokens


def test_bad_key_is_an_authentication_error(live_server: LiveServer) -> None:
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client(live_server, "llms_abcdefghijkl_" + "x" * 43).messages.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=1
        )
    assert caught.value.status_code == 401
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": caught.value.body["error"]["message"]},  # type: ignore[index]
    }


def test_a_model_the_key_may_not_use_is_permission_denied(live_server: LiveServer) -> None:
    _, key = new_key(live_server, allowed_models=["other-model"], allow_unknown_models=True)
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        client(live_server, key).messages.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=1
        )
    assert caught.value.body["error"]["type"] == "permission_error"  # type: ignore[index]


def test_an_unknown_model_is_not_found(live_server: LiveServer) -> None:
    c = client(live_server)
    with pytest.raises(anthropic.NotFoundError) as caught:
        c.messages.create(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}], max_tokens=1
        )
    assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError):
        c.messages.count_tokens(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}]
        )


IMAGE_TURN: Any = [{"role": "user", "content": [{"type": "image", "source": {}}]}]


def test_a_bad_body_is_an_invalid_request_error_naming_the_field(live_server: LiveServer) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client(live_server).messages.create(
            model=MODEL,
            messages=IMAGE_TURN,
            max_tokens=1,
        )
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "image" in caught.value.message
    missing = httpx.post(
        live_server.base_url + "/v1/messages",
        headers={"x-api-key": live_server.user_key, "anthropic-version": "2023-06-01"},
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert missing.status_code == 400
    assert "max_tokens" in missing.json()["error"]["message"]


def test_rpm_exhausted_is_a_rate_limit_error_with_retry_after(live_server: LiveServer) -> None:
    _, key = new_key(live_server, rpm_limit=1)
    c = client(live_server, key)
    c.messages.create(model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=1)
    with pytest.raises(anthropic.RateLimitError) as caught:
        c.messages.create(model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=1)
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 60


def test_count_tokens_takes_an_rpm_slot(live_server: LiveServer) -> None:
    """Counting runs on the model's tokenizer thread, which every key's prompt waits for: a
    key may not count without limit while the others wait."""
    _, key = new_key(live_server, rpm_limit=1)
    c = client(live_server, key)
    messages: Any = [{"role": "user", "content": "x"}]
    assert c.messages.count_tokens(model=MODEL, messages=messages).input_tokens > 0
    with pytest.raises(anthropic.RateLimitError) as caught:
        c.messages.count_tokens(model=MODEL, messages=messages)
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    with pytest.raises(anthropic.RateLimitError):  # the same window as its messages
        c.messages.create(model=MODEL, messages=messages, max_tokens=1)


def test_quota_exhausted_is_a_rate_limit_error(live_server: LiveServer) -> None:
    _, key = new_key(live_server, quota_tokens=5)
    with pytest.raises(anthropic.RateLimitError) as caught:
        client(live_server, key).messages.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=50
        )
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert caught.value.response.headers["x-quota-remaining-tokens"] == "5"


def _admin_get(live_server: LiveServer, path: str, **params: str) -> list[dict[str, Any]]:
    response = httpx.get(
        live_server.base_url + path,
        headers={"Authorization": f"Bearer {live_server.admin_key}"},
        params=params,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["data"]
    return rows


def test_usage_and_the_request_log_record_the_request(live_server: LiveServer) -> None:
    key_id, key = new_key(live_server)
    message = client(live_server, key).messages.create(
        model=MODEL, messages=[{"role": "user", "content": unique_prompt()}], max_tokens=3
    )
    deadline = time.monotonic() + 10
    while not (logs := _admin_get(live_server, "/admin/logs", key_id=key_id)):
        assert time.monotonic() < deadline, "no request-log row"
        time.sleep(0.1)
    assert [(r["route"], r["status"], r["model"]) for r in logs] == [("/v1/messages", 200, MODEL)]
    assert logs[0]["prompt_tokens"] == message.usage.input_tokens
    assert logs[0]["completion_tokens"] == message.usage.output_tokens
    [usage] = _admin_get(live_server, "/admin/usage", key_id=key_id)
    assert usage["requests"] == 1
    assert usage["used_tokens"] == message.usage.input_tokens + message.usage.output_tokens
