"""The official openai SDK (and langchain-openai) against a live server process: chat and
text completions, and the stateless Responses API through the same gateway."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam
from openai.types.responses import (
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseIncompleteEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
)
from pydantic import SecretStr

from livesupport import LiveServer, openai_client

MODEL = "demo-tiny-llama"

pytestmark = pytest.mark.slow


def client(live_server: LiveServer, key: str | None = None) -> OpenAI:
    return openai_client(live_server, key)


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


def test_top_k_1_samples_the_greedy_answer(live_server: LiveServer) -> None:
    """``top_k`` (vLLM's extension) reaches the sampler: at temperature 1, a sample from the
    one likeliest token is the greedy answer, while a sample from all of them is not."""
    openai = client(live_server)

    def answer(**sampling: Any) -> str | None:
        completion = openai.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Count the stars"}],
            max_tokens=16,
            **sampling,
        )
        content: str | None = completion.choices[0].message.content
        return content

    greedy = answer(temperature=0)
    assert answer(temperature=1.0, seed=5, extra_body={"top_k": 1}) == greedy
    assert answer(temperature=1.0, seed=5) != greedy


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


# --- The Responses API (stateless) ------------------------------------------------------


def test_responses_create_from_a_string(live_server: LiveServer) -> None:
    reply = client(live_server).responses.create(
        model=MODEL,
        input=unique_prompt(),
        instructions="Be brief.",
        max_output_tokens=8,
        temperature=0.7,
        top_p=0.9,
        store=False,
        metadata={"team": "a"},
    )
    assert reply.object == "response"
    assert reply.id.startswith("resp_")
    assert reply.model == MODEL
    assert reply.status in {"completed", "incomplete"}
    assert reply.instructions == "Be brief."
    assert reply.metadata == {"team": "a"}
    [message] = reply.output
    assert message.type == "message"
    assert reply.output_text == message.content[0].text  # type: ignore[union-attr]
    assert reply.usage is not None
    assert reply.usage.input_tokens > 0
    assert 0 < reply.usage.output_tokens <= 8
    assert reply.usage.total_tokens == reply.usage.input_tokens + reply.usage.output_tokens


def test_responses_create_from_message_items_cut_short(live_server: LiveServer) -> None:
    # The random-weight demo model samples, and its first token may be its end token: that
    # answer completes on its own (one CI run) and tests nothing about the cut, so such a
    # try is made again with a new prompt. An answer that runs past the cut is never retried.
    for _ in range(3):
        reply = client(live_server).responses.create(
            model=MODEL,
            input=[
                {"role": "developer", "content": "Answer in English."},
                {"role": "user", "content": [{"type": "input_text", "text": unique_prompt()}]},
                {"type": "message", "role": "assistant", "content": "Sure."},
                {"role": "user", "content": "Go on."},
            ],
            max_output_tokens=1,
        )
        assert reply.usage is not None
        if reply.status != "completed" or reply.usage.output_tokens > 1:
            break
    assert reply.status == "incomplete"
    assert reply.incomplete_details is not None
    assert reply.incomplete_details.reason == "max_output_tokens"
    assert reply.usage is not None
    assert reply.usage.output_tokens == 1


def test_responses_stream_parses_into_the_sdk_event_types(live_server: LiveServer) -> None:
    events = list(
        client(live_server).responses.create(
            model=MODEL, input=unique_prompt(), max_output_tokens=12, temperature=0.8, stream=True
        )
    )
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:-1] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert isinstance(events[0], ResponseCreatedEvent)
    deltas = [e.delta for e in events if isinstance(e, ResponseTextDeltaEvent)]
    assert len(deltas) >= 2
    [done] = [e for e in events if isinstance(e, ResponseTextDoneEvent)]
    assert done.text == "".join(deltas)
    last = events[-1]
    assert isinstance(last, ResponseCompletedEvent | ResponseIncompleteEvent)
    assert last.response.output_text == done.text
    assert last.response.usage is not None
    assert last.response.usage.output_tokens > 0


def test_responses_stream_helper_ends_as_the_plain_answer_when_greedy(
    live_server: LiveServer,
) -> None:
    c = client(live_server)
    prompt = unique_prompt()
    plain = c.responses.create(model=MODEL, input=prompt, max_output_tokens=8, temperature=0)
    with c.responses.stream(
        model=MODEL, input=prompt, max_output_tokens=8, temperature=0
    ) as stream:
        # The helper's get_final_response() wants response.completed; an answer that
        # max_output_tokens cut short ends with response.incomplete, as OpenAI's does.
        *_, last = list(stream)
    assert isinstance(last, ResponseCompletedEvent | ResponseIncompleteEvent)
    assert last.response.status == plain.status
    assert last.response.output_text == plain.output_text
    assert last.response.usage == plain.usage


def test_responses_previous_response_id_is_a_clear_400(live_server: LiveServer) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(live_server).responses.create(
            model=MODEL, input="hi", previous_response_id="resp_123"
        )
    assert caught.value.param == "previous_response_id"
    assert "stores no responses" in caught.value.message


IMAGE_INPUT: Any = [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]


def test_responses_errors_are_in_openai_shape(live_server: LiveServer) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client(live_server).responses.create(model="gpt-5", input="hi")
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.AuthenticationError) as unauthenticated:
        client(live_server, "llms_abcdefghijkl_" + "x" * 43).responses.create(
            model=MODEL, input="hi"
        )
    assert unauthenticated.value.code == "invalid_api_key"
    with pytest.raises(openai.BadRequestError) as unsupported:
        client(live_server).responses.create(
            model=MODEL,
            input=IMAGE_INPUT,
        )
    assert unsupported.value.param == "input[0].content"
