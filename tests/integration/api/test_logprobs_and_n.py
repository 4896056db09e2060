"""``logprobs`` and ``n`` with the official openai SDK against a live server process on
the demo (torch) model: log probabilities in both OpenAI shapes, streamed and not, and
several choices of one prompt decoded together, with their usage, cache and quota."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletion

from livesupport import LiveServer, openai_client

MODEL = "demo-tiny-llama"

pytestmark = pytest.mark.slow


def client(live_server: LiveServer, key: str | None = None) -> OpenAI:
    return openai_client(live_server, key)


def unique_messages() -> Any:
    return [{"role": "user", "content": f"Tell me about {uuid.uuid4().hex}"}]


def content_logprobs(reply: ChatCompletion, index: int = 0) -> list[Any]:
    logprobs = reply.choices[index].logprobs
    assert logprobs is not None
    assert logprobs.content is not None
    return logprobs.content


def test_greedy_chat_logprobs_rank_the_chosen_token_first(live_server: LiveServer) -> None:
    reply = client(live_server).chat.completions.create(
        model=MODEL,
        messages=unique_messages(),
        max_tokens=12,
        temperature=0,
        logprobs=True,
        top_logprobs=5,
    )
    entries = content_logprobs(reply)
    assert entries, "every generated token of the text has an entry"
    assert "".join(e.token for e in entries) == reply.choices[0].message.content
    for entry in entries:
        assert entry.logprob <= 0
        assert entry.bytes == list(entry.token.encode())
        tops = [t.logprob for t in entry.top_logprobs]
        assert len(tops) == 5
        assert tops == sorted(tops, reverse=True)
        # Temperature 0 takes the argmax of the distribution the values come from.
        assert entry.top_logprobs[0].token == entry.token
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)


def test_sampled_logprobs_are_the_model_s_own_distribution(live_server: LiveServer) -> None:
    """At temperature 1.5 the sampled token is often not the likeliest; its log probability
    is the raw model's, the same value the top list gives it where it is in the list."""
    reply = client(live_server).chat.completions.create(
        model=MODEL,
        messages=unique_messages(),
        max_tokens=16,
        temperature=1.5,
        seed=11,
        logprobs=True,
        top_logprobs=20,
    )
    entries = content_logprobs(reply)
    for entry in entries:
        assert entry.logprob <= 0
        tops = [(t.token, t.logprob) for t in entry.top_logprobs]
        assert len(tops) == 20
        # Below the 20th it is not listed; at or above, it is (two token ids may share a
        # text, so the pair is looked for, not the text).
        if entry.logprob >= tops[-1][1] - 1e-6:
            assert any(t == entry.token and lp == pytest.approx(entry.logprob) for t, lp in tops)


def test_logprobs_not_asked_are_null(live_server: LiveServer) -> None:
    reply = client(live_server).chat.completions.create(
        model=MODEL, messages=unique_messages(), max_tokens=4, temperature=0
    )
    assert reply.choices[0].logprobs is None
    zero = client(live_server).chat.completions.create(
        model=MODEL, messages=unique_messages(), max_tokens=4, temperature=0, logprobs=True
    )
    assert all(e.top_logprobs == [] for e in content_logprobs(zero))


def test_text_completion_logprobs_in_the_legacy_shape(live_server: LiveServer) -> None:
    reply = client(live_server).completions.create(
        model=MODEL, prompt=f"Once {uuid.uuid4().hex}", max_tokens=10, temperature=0, logprobs=3
    )
    logprobs = reply.choices[0].logprobs
    assert logprobs is not None
    tokens, values = logprobs.tokens or [], logprobs.token_logprobs or []
    tops, offsets = logprobs.top_logprobs or [], logprobs.text_offset or []
    assert len(tokens) == len(values) == len(tops) == len(offsets) > 0
    assert "".join(tokens) == reply.choices[0].text
    assert offsets == [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
    for token, value, top in zip(tokens, values, tops, strict=True):
        assert value <= 0
        assert len(top) <= 4  # the 3 likeliest and the sampled one ("up to logprobs+1")
        assert max(top.values()) == pytest.approx(value)  # greedy: it is the likeliest
        assert top[token] == pytest.approx(value)


def test_streamed_logprobs_equal_the_whole_answer_s(live_server: LiveServer) -> None:
    """Streamed (computed afresh, then stored, then replayed from the cache) and whole: the
    same tokens and values (to float32 rounding: a prompt computed again starts from the
    prefix cache's copy, another path through the same arithmetic); the hit replays the
    stored values exactly."""
    openai_client = client(live_server)
    ask: dict[str, Any] = {
        "model": MODEL,
        "messages": unique_messages(),
        "max_tokens": 12,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 2,
    }
    whole = openai_client.chat.completions.create(**ask, extra_body={"cache": False})
    expected = [(e.token, pytest.approx(e.logprob, abs=1e-4)) for e in content_logprobs(whole)]
    runs = []
    for body in ({"cache": False}, {}, {}):  # computed, stored, a cache hit
        streamed = []
        text = ""
        raw = openai_client.chat.completions.with_raw_response.create(
            **ask, stream=True, extra_body=body
        )
        for chunk in raw.parse():
            for choice in chunk.choices:
                text += choice.delta.content or ""
                if choice.logprobs and choice.logprobs.content:
                    streamed += [(e.token, e.logprob) for e in choice.logprobs.content]
        assert streamed == expected
        assert text == whole.choices[0].message.content
        runs.append((raw.headers["x-cache"], streamed))
    assert [status for status, _ in runs] == ["BYPASS", "MISS", "HIT"]
    assert runs[2][1] == runs[1][1]


def test_a_cached_answer_without_logprobs_is_no_hit_for_a_request_with_them(
    live_server: LiveServer,
) -> None:
    ask: dict[str, Any] = {
        "model": MODEL,
        "messages": unique_messages(),
        "max_tokens": 6,
        "temperature": 0,
    }
    openai_client = client(live_server)
    plain = openai_client.chat.completions.with_raw_response.create(**ask)
    assert plain.headers["x-cache"] == "MISS"
    wanted = openai_client.chat.completions.with_raw_response.create(**ask, logprobs=True)
    assert wanted.headers["x-cache"] == "MISS"
    assert content_logprobs(wanted.parse())
    again = openai_client.chat.completions.with_raw_response.create(**ask, logprobs=True)
    assert again.headers["x-cache"] == "HIT"
    assert content_logprobs(again.parse()) == content_logprobs(wanted.parse())


def tokens_of(reply: ChatCompletion) -> int:
    """A choice's generated tokens: one per logprob entry, and the end of sequence (which
    has no text, so no entry) when it stopped."""
    return sum(
        len(content_logprobs(reply, c.index)) + (c.finish_reason == "stop") for c in reply.choices
    )


def test_n_choices_with_a_seed_reproduce_and_their_usage_sums(live_server: LiveServer) -> None:
    ask: dict[str, Any] = {
        "model": MODEL,
        "messages": unique_messages(),
        "max_tokens": 10,
        "temperature": 1.0,
        "seed": 1234,
        "n": 3,
        "logprobs": True,
        "extra_body": {"cache": False},
    }
    first = client(live_server).chat.completions.create(**ask)
    second = client(live_server).chat.completions.create(**ask)
    texts = [c.message.content for c in first.choices]
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert texts == [c.message.content for c in second.choices]
    assert len(set(texts)) > 1, "each choice samples with a seed of its own"
    assert first.usage is not None
    assert first.usage.completion_tokens == tokens_of(first)
    alone = client(live_server).chat.completions.create(**{**ask, "n": 1})
    assert alone.choices[0].message.content == texts[0], "choice 0 is the seed's own sample"
    assert alone.usage is not None
    assert first.usage.prompt_tokens == alone.usage.prompt_tokens


def test_n_streams_each_choice_by_index(live_server: LiveServer) -> None:
    ask: dict[str, Any] = {
        "model": MODEL,
        "messages": unique_messages(),
        "max_tokens": 8,
        "temperature": 1.0,
        "seed": 77,
        "n": 3,
        "extra_body": {"cache": False},
    }
    whole = client(live_server).chat.completions.create(**ask)
    texts = ["", "", ""]
    finishes: dict[int, str] = {}
    roles = set()
    usage = None
    for chunk in client(live_server).chat.completions.create(
        **ask, stream=True, stream_options={"include_usage": True}
    ):
        usage = chunk.usage or usage
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.delta.role:
                roles.add(choice.index)
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert texts == [c.message.content for c in whole.choices]
    assert finishes == {c.index: c.finish_reason for c in whole.choices}
    assert roles == {0, 1, 2}
    assert usage is not None
    assert whole.usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        whole.usage.prompt_tokens,
        whole.usage.completion_tokens,
    )


def test_n_choices_are_cached_together(live_server: LiveServer) -> None:
    ask: dict[str, Any] = {
        "model": MODEL,
        "prompt": f"List {uuid.uuid4().hex}",
        "max_tokens": 6,
        "temperature": 0.8,
        "seed": 3,
        "n": 2,
        "logprobs": 1,
    }
    first = client(live_server).completions.with_raw_response.create(**ask)
    again = client(live_server).completions.with_raw_response.create(**ask)
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("MISS", "HIT")
    assert again.parse().choices == first.parse().choices
    assert len(first.parse().choices) == 2
    one = client(live_server).completions.with_raw_response.create(**{**ask, "n": 1})
    assert one.headers["x-cache"] == "MISS"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"n": 5}, "n"),
        ({"n": 0}, "n"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": "yes"}, "logprobs"),
    ],
)
def test_out_of_range_values_are_a_400_naming_the_field(
    live_server: LiveServer, body: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client(live_server).chat.completions.create(
            model=MODEL, messages=unique_messages(), max_tokens=4, extra_body=body
        )
    assert refused.value.param == param


def test_text_logprobs_over_5_are_a_400(live_server: LiveServer) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client(live_server).completions.create(model=MODEL, prompt="x", max_tokens=4, logprobs=6)
    assert refused.value.param == "logprobs"


def new_key(live_server: LiveServer, **fields: Any) -> tuple[str, str]:
    created = httpx.post(
        live_server.base_url + "/admin/keys",
        headers={"Authorization": f"Bearer {live_server.admin_key}"},
        json={"name": f"n-{uuid.uuid4().hex[:8]}", "role": "user", **fields},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    return created.json()["details"]["id"], created.json()["key"]


def used_tokens(live_server: LiveServer, key_id: str) -> int:
    response = httpx.get(
        live_server.base_url + "/admin/usage",
        params={"key_id": key_id},
        headers={"Authorization": f"Bearer {live_server.admin_key}"},
    )
    [record] = response.json()["data"]
    return int(record["used_tokens"])


def test_quota_reserves_every_choice_and_charges_what_they_used(live_server: LiveServer) -> None:
    """The reservation is the prompt plus n x max_tokens: a quota that holds one choice's
    worst case but not three refuses n=3; the charge is the usage the answer reports."""
    messages = unique_messages()
    probe = client(live_server).chat.completions.create(
        model=MODEL, messages=messages, max_tokens=1, temperature=0
    )
    assert probe.usage is not None
    prompt = probe.usage.prompt_tokens
    key_id, key = new_key(live_server, quota_tokens=prompt + 2 * 20)
    ask: dict[str, Any] = {"model": MODEL, "messages": messages, "max_tokens": 20}
    with pytest.raises(openai.RateLimitError) as refused:
        client(live_server, key).chat.completions.create(**ask, n=3)
    assert refused.value.code == "insufficient_quota"
    assert used_tokens(live_server, key_id) == 0
    reply = client(live_server, key).chat.completions.create(
        **ask, n=2, temperature=1.0, extra_body={"cache": False}
    )
    assert reply.usage is not None
    assert len(reply.choices) == 2
    assert reply.usage.total_tokens == prompt + reply.usage.completion_tokens
    assert used_tokens(live_server, key_id) == reply.usage.total_tokens
