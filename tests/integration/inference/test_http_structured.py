"""``response_format`` on an ``http`` model: sent to the upstream as asked, and with
``strict`` the answer is held to the schema (a 502-kind error when it does not match)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from integration.inference.fake_upstream import FakeUpstream
from llmserver.adapters.inference.http_backend import HttpBackend
from llmserver.adapters.inference.http_upstream_client import UpstreamClient
from llmserver.domain.errors import ErrorKind, GatewayError, InvalidRequest, UpstreamError
from llmserver.domain.inference import (
    ChatMessage,
    FinishReason,
    GenerationParams,
    Prompt,
    StreamEnd,
    TextDelta,
)
from llmserver.domain.output_constraint import OutputConstraint
from llmserver.domain.registry import BackendKind, ModelSpec

CHAT = Prompt(messages=(ChatMessage("user", "A city as JSON"),))
CITY = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]+$"}},
    "required": ["city", "zip"],
}
STRICT = GenerationParams(
    max_tokens=20, constraint=OutputConstraint.json_schema(CITY, name="city", strict=True)
)


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    server = FakeUpstream(finish="stop")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def backend(upstream: FakeUpstream) -> AsyncIterator[HttpBackend]:
    async with UpstreamClient() as client:
        spec = ModelSpec(id="remote", backend=BackendKind.HTTP, source=upstream.url)
        yield HttpBackend(spec, client=client, read_timeout_s=5.0, backoff_s=0.01)


async def test_response_format_reaches_the_upstream_as_sent(
    upstream: FakeUpstream, backend: HttpBackend
) -> None:
    upstream.pieces = ('{"city":"Oslo",', '"zip":"0150"}')
    answer = await backend.generate(CHAT, STRICT)
    assert json.loads(answer.text) == {"city": "Oslo", "zip": "0150"}
    assert upstream.seen[-1].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "city", "schema": CITY, "strict": True},
    }
    json_object = GenerationParams(max_tokens=5, constraint=OutputConstraint.json_object())
    await backend.generate(CHAT, json_object)
    assert upstream.seen[-1].body["response_format"] == {"type": "json_object"}
    await backend.generate(CHAT, GenerationParams(max_tokens=5))
    assert "response_format" not in upstream.seen[-1].body


@pytest.mark.parametrize(
    "pieces",
    [("Hello", ", world"), ('{"city":"Oslo",', '"zip":"N-0150"}'), ('{"city":',)],
    ids=["not JSON", "fails the pattern", "cut short"],
)
async def test_a_strict_answer_that_does_not_match_is_an_upstream_error(
    upstream: FakeUpstream, backend: HttpBackend, pieces: tuple[str, ...]
) -> None:
    upstream.pieces = pieces
    with pytest.raises(UpstreamError, match="does not match the response_format") as whole:
        await backend.generate(CHAT, STRICT)
    assert whole.value.kind is ErrorKind.UPSTREAM
    received: list[str] = []

    async def read_stream() -> None:
        async for event in backend.stream(CHAT, STRICT):
            assert not isinstance(event, StreamEnd)  # the error comes instead of the end
            if isinstance(event, TextDelta):
                received.append(event.text)

    with pytest.raises(UpstreamError, match="does not match the response_format"):
        await read_stream()
    assert "".join(received) == "".join(pieces)


async def test_without_strict_or_when_truncated_the_answer_is_not_checked(
    upstream: FakeUpstream, backend: HttpBackend
) -> None:
    upstream.pieces = ("not", " JSON")
    loose = GenerationParams(max_tokens=20, constraint=OutputConstraint.json_schema(CITY))
    assert (await backend.generate(CHAT, loose)).text == "not JSON"
    upstream.finish = "length"
    truncated = await backend.generate(CHAT, STRICT)
    assert truncated.finish_reason is FinishReason.LENGTH
    assert truncated.text == "not JSON"


async def test_an_invalid_strict_schema_is_a_400_before_the_upstream_is_asked(
    upstream: FakeUpstream, backend: HttpBackend
) -> None:
    bad = GenerationParams(
        max_tokens=5,
        constraint=OutputConstraint.json_schema({"type": "objectx"}, strict=True),
    )
    with pytest.raises(InvalidRequest) as raised:
        await backend.generate(CHAT, bad)
    error: GatewayError = raised.value
    assert error.param == "response_format.json_schema.schema"
    with pytest.raises(InvalidRequest):  # when the stream is opened, before any event
        backend.stream(CHAT, bad)
    assert upstream.seen == []


async def test_each_of_n_strict_choices_is_checked_on_its_own(
    upstream: FakeUpstream, backend: HttpBackend
) -> None:
    """Two valid choices pass, streamed too (their texts are not read as one); a second
    choice that does not match is an error, whole and streamed."""
    upstream.pieces = ('{"city":"Oslo",', '"zip":"0150"}')
    two = replace(STRICT, n=2)
    whole = await backend.generate(CHAT, two)
    assert json.loads(whole.more[0].text) == json.loads(whole.text)
    events = [event async for event in backend.stream(CHAT, two)]
    assert isinstance(events[-1], StreamEnd)
    assert events[-1].more == (FinishReason.STOP,)
    upstream.other_pieces = ('{"city":"Oslo",', '"zip":"N-0150"}')
    with pytest.raises(UpstreamError, match="does not match the response_format"):
        await backend.generate(CHAT, two)
    with pytest.raises(UpstreamError, match="does not match the response_format"):
        async for _ in backend.stream(CHAT, two):
            pass
