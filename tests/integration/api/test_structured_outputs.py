"""Structured outputs through the official openai SDK against a live server on the
random-weight demo model: ``parse`` with a pydantic model, streamed and not, and
``json_object``. The weights are random, so a valid answer proves the constraint works."""

from __future__ import annotations

import json
from typing import Any, Literal

import httpx
import jsonschema
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai import OpenAI
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel, Field

from livesupport import LiveServer, openai_client

MODEL = "demo-tiny-llama"

pytestmark = pytest.mark.slow


class Address(BaseModel):
    zip: str = Field(pattern=r"^[0-9]{5}$")
    city: str = Field(max_length=10)


class Pet(BaseModel):
    name: str = Field(max_length=12)
    age: int = Field(ge=0, le=30)
    kind: Literal["cat", "dog", "fish"]
    address: Address


def client(live_server: LiveServer) -> OpenAI:
    return openai_client(live_server, timeout=120)


MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Describe a pet."}]
PET_SCHEMA = openai.lib._pydantic.to_strict_json_schema(Pet)
"""The schema ``parse`` sends for ``Pet``, for a request the SDK's ``create`` sends."""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_parse_gives_a_valid_model(live_server: LiveServer, seed: int) -> None:
    completion = client(live_server).chat.completions.parse(
        model=MODEL,
        messages=MESSAGES,
        response_format=Pet,
        max_tokens=200,
        temperature=1.0,
        seed=seed,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert isinstance(choice.message.parsed, Pet)
    assert Pet.model_validate_json(choice.message.content or "") == choice.message.parsed


def test_a_streamed_parse_gives_a_valid_model(live_server: LiveServer) -> None:
    with client(live_server).chat.completions.stream(
        model=MODEL,
        messages=MESSAGES,
        response_format=Pet,
        max_tokens=200,
        temperature=0,
    ) as stream:
        deltas = [e for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert len(deltas) > 1  # it did stream
    assert isinstance(final.choices[0].message.parsed, Pet)


def test_parse_with_n_gives_a_valid_model_per_choice_streamed_too(
    live_server: LiveServer,
) -> None:
    """Each of the n choices decodes under a matcher of its own: each parses, and a
    stream's deltas carry their choice's index."""
    sdk = client(live_server)
    ask: dict[str, Any] = {
        "model": MODEL,
        "messages": MESSAGES,
        "max_tokens": 200,
        "temperature": 1.0,
        "seed": 31,
        "n": 2,
        "extra_body": {"cache": False},
    }
    completion = sdk.chat.completions.parse(response_format=Pet, **ask)
    assert [c.index for c in completion.choices] == [0, 1]
    for choice in completion.choices:
        assert choice.finish_reason == "stop"
        assert isinstance(choice.message.parsed, Pet)
    contents = [c.message.content for c in completion.choices]
    assert contents[0] != contents[1]
    texts = ["", ""]
    schema: Any = {"type": "json_schema", "json_schema": {"name": "Pet", "schema": PET_SCHEMA}}
    for chunk in sdk.chat.completions.create(**ask, response_format=schema, stream=True):
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == contents


def test_json_object_is_an_object_or_honestly_truncated(live_server: LiveServer) -> None:
    reply = client(live_server).chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        response_format={"type": "json_object"},
        max_tokens=40,
        temperature=0,
    )
    text = reply.choices[0].message.content or ""
    assert text.startswith("{")
    if reply.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)
    else:
        assert reply.choices[0].finish_reason == "length"


@pytest.mark.parametrize(
    ("response_format", "param"),
    [
        ({"type": "xml"}, "response_format.type"),
        ({"type": "json_schema"}, "response_format.json_schema"),  # the missing field
        (
            {"type": "json_schema", "json_schema": {"name": "bad name!", "schema": {}}},
            "response_format.json_schema.name",
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strin"}}},
            "response_format",
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": "not an object"}},
            "response_format.json_schema.schema",
        ),
    ],
    ids=["unknown type", "no json_schema", "bad name", "invalid schema", "schema not object"],
)
def test_a_bad_response_format_is_a_400_naming_it(
    live_server: LiveServer, response_format: Any, param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client(live_server).chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            response_format=response_format,
            max_tokens=5,
        )
    body = raised.value.body
    assert isinstance(body, dict)
    assert body["param"] == param, body


_LEAVES = st.sampled_from(
    [
        {"type": "integer", "minimum": -5, "maximum": 99},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "string", "maxLength": 8},
        {"type": "string", "pattern": "^[a-f0-9]{2,6}$"},
        {"enum": ["red", "green", 3, None]},
        {"const": "fixed"},
        {"type": "string", "format": "date"},
    ]
)
_SCHEMAS = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.builds(
            lambda props, extra: {
                "type": "object",
                "properties": props,
                "required": sorted(props),
                "additionalProperties": extra,
            },
            st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), inner, max_size=3),
            st.booleans(),
        ),
        st.builds(lambda items: {"type": "array", "items": items, "maxItems": 3}, inner),
        st.builds(lambda options: {"anyOf": options}, st.lists(inner, min_size=1, max_size=3)),
    ),
    max_leaves=6,
)


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(schema=_SCHEMAS)
def test_generated_schemas_give_valid_json_or_a_400(
    live_server: LiveServer, schema: dict[str, Any]
) -> None:
    """Random schemas (objects, arrays, unions, enums, patterns, formats), random weights:
    the answer validates whenever it finished, and nothing is a 5xx."""
    response = httpx.post(
        live_server.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {live_server.user_key}"},
        json={
            "model": MODEL,
            "messages": MESSAGES,
            "max_tokens": 120,
            "temperature": 0,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "generated", "schema": schema},
            },
        },
        timeout=120,
    )
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json()["error"]["param"] == "response_format", response.text
        return
    choice = response.json()["choices"][0]
    if choice["finish_reason"] == "stop":
        jsonschema.validate(json.loads(choice["message"]["content"]), schema)
