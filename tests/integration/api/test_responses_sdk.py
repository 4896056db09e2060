"""The openai SDK's Responses client against a live server process: the stateless
Responses API served through the same gateway as chat completions."""

from __future__ import annotations

import uuid
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types.responses import (
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseIncompleteEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
)

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
    return f"Write about {uuid.uuid4().hex}"


def test_create_from_a_string(live_server: LiveServer) -> None:
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


def test_create_from_message_items_cut_short(live_server: LiveServer) -> None:
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
    assert reply.status == "incomplete"
    assert reply.incomplete_details is not None
    assert reply.incomplete_details.reason == "max_output_tokens"
    assert reply.usage is not None
    assert reply.usage.output_tokens == 1


def test_stream_parses_into_the_sdk_event_types(live_server: LiveServer) -> None:
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


def test_stream_helper_ends_as_the_plain_answer_when_greedy(live_server: LiveServer) -> None:
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


def test_previous_response_id_is_a_clear_400(live_server: LiveServer) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(live_server).responses.create(
            model=MODEL, input="hi", previous_response_id="resp_123"
        )
    assert caught.value.param == "previous_response_id"
    assert "stores no responses" in caught.value.message


IMAGE_INPUT: Any = [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]


def test_errors_are_in_openai_shape(live_server: LiveServer) -> None:
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
    assert unsupported.value.param == "input[0].content[0]"
