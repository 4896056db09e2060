"""The HTTP backend against a real (misbehaving) OpenAI-compatible server on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import replace
from typing import Literal

import pytest

from integration.inference.fake_upstream import Answers, FakeUpstream
from llmserver.adapters.inference.http_backend import HttpBackend
from llmserver.adapters.inference.http_upstream_client import UpstreamClient
from llmserver.domain.errors import ErrorKind, GenerationTimeout, InvalidRequest, UpstreamError
from llmserver.domain.inference import (
    ChatMessage,
    Completion,
    FinishReason,
    GenerationParams,
    Prompt,
    StreamEnd,
    TextDelta,
)
from llmserver.domain.registry import BackendKind, ModelSpec

CHAT = Prompt(messages=(ChatMessage("user", "Hi"),))
PARAMS = GenerationParams(max_tokens=9, temperature=0.5, stop=("END",), seed=4)

MakeBackend = Callable[..., HttpBackend]


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    server = FakeUpstream()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def make_backend(upstream: FakeUpstream) -> AsyncIterator[MakeBackend]:
    async with UpstreamClient() as client:

        def make(source: str | None = None, **options: float) -> HttpBackend:
            spec = ModelSpec(
                id="remote",
                backend=BackendKind.HTTP,
                source=source or upstream.url,
                upstream_model="upstream-llama",
            )
            settings = {"read_timeout_s": 5.0, "backoff_s": 0.01, **options}
            return HttpBackend(spec, client=client, **settings)  # type: ignore[arg-type]

        yield make


async def test_chat_stream_passes_through(
    upstream: FakeUpstream, make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPSTREAM_TEST_KEY", "sk-upstream-secret")
    spec = ModelSpec(
        id="remote",
        backend=BackendKind.HTTP,
        source=upstream.url + "/v1/",
        api_key_env="UPSTREAM_TEST_KEY",
    )
    async with UpstreamClient() as client:
        backend = HttpBackend(spec, client=client)
        events = [event async for event in backend.stream(CHAT, PARAMS)]
    assert events == [
        *(TextDelta(piece) for piece in upstream.pieces),
        StreamEnd(FinishReason.LENGTH, prompt_tokens=7, completion_tokens=4),
    ]
    (seen,) = upstream.seen
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == "Bearer sk-upstream-secret"
    assert seen.body == {
        "model": "remote",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 9,
        "temperature": 0.5,
        "top_p": 1.0,
        "stop": ["END"],
        "seed": 4,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def test_completions(upstream: FakeUpstream, make_backend: MakeBackend) -> None:
    completion = await make_backend().generate(Prompt(text="Say hi"), PARAMS)
    assert completion.text == "Hello, world!"
    assert (completion.prompt_tokens, completion.completion_tokens) == (7, 4)
    assert upstream.seen[0].path == "/v1/completions"
    assert upstream.seen[0].body["prompt"] == "Say hi"
    assert upstream.seen[0].body["model"] == "upstream-llama"


async def test_top_k_is_sent_only_when_set(
    upstream: FakeUpstream, make_backend: MakeBackend
) -> None:
    backend = make_backend()  # not OpenAI's own parameter: a hosted API may refuse it
    await backend.generate(CHAT, PARAMS)
    await backend.generate(CHAT, replace(PARAMS, top_k=5))
    assert "top_k" not in upstream.seen[0].body
    assert upstream.seen[1].body["top_k"] == 5


@pytest.mark.parametrize("prompt", [CHAT, Prompt(text="Say hi")], ids=["chat", "completions"])
@pytest.mark.parametrize("answers", ["as asked", "sse"])  # some upstreams always stream
async def test_a_whole_completion_asks_for_json(
    upstream: FakeUpstream, make_backend: MakeBackend, prompt: Prompt, answers: Answers
) -> None:
    upstream.answers = answers
    completion = await make_backend().generate(prompt, PARAMS)
    assert completion == Completion("Hello, world!", 7, 4, FinishReason.LENGTH)
    (seen,) = upstream.seen
    assert seen.body["stream"] is False
    assert "stream_options" not in seen.body


async def test_a_json_answer_to_a_stream_is_one_chunk(
    upstream: FakeUpstream, make_backend: MakeBackend
) -> None:
    upstream.answers = "json"
    events = [event async for event in make_backend().stream(CHAT, PARAMS)]
    assert events == [
        TextDelta("Hello, world!", tokens=4),
        StreamEnd(FinishReason.LENGTH, prompt_tokens=7, completion_tokens=4),
    ]
    assert upstream.seen[0].body["stream"] is True


@pytest.mark.parametrize(
    ("answers", "streamed", "completion_tokens"),
    [
        ("sse", True, 4),  # a chunk each
        ("json", False, 9),  # "Hello, world!" is 13 bytes, capped at max_tokens
        ("json", True, 9),
    ],
    ids=["stream", "whole", "json-to-stream"],
)
async def test_an_answer_without_usage_is_counted(
    upstream: FakeUpstream,
    make_backend: MakeBackend,
    answers: Answers,
    streamed: bool,
    completion_tokens: int,
) -> None:
    upstream.usage = False
    upstream.answers = answers
    backend = make_backend()
    if streamed:
        *_, end = [event async for event in backend.stream(CHAT, PARAMS)]
        assert isinstance(end, StreamEnd)
        counts = (end.prompt_tokens, end.completion_tokens)
    else:
        completion = await backend.generate(CHAT, PARAMS)
        counts = (completion.prompt_tokens, completion.completion_tokens)
    assert counts == (await backend.count_tokens(CHAT), completion_tokens)


@pytest.mark.parametrize("failure", ["500", "hangup"])
async def test_retries_before_the_first_byte(
    upstream: FakeUpstream, make_backend: MakeBackend, failure: str
) -> None:
    upstream.script = [failure, failure, "ok"]  # type: ignore[list-item]
    completion = await make_backend(max_retries=2).generate(CHAT, PARAMS)
    assert completion.text == "Hello, world!"
    assert len(upstream.seen) == 3


async def test_gives_up_after_the_retries(
    upstream: FakeUpstream, make_backend: MakeBackend
) -> None:
    upstream.script = ["500"]
    with pytest.raises(UpstreamError, match="HTTP 500 after 3 attempts: scripted 500") as raised:
        await make_backend(max_retries=2).generate(CHAT, PARAMS)
    assert raised.value.kind is ErrorKind.UPSTREAM
    assert raised.value.upstream_status == 500


async def test_no_retry_after_the_stream_started(
    upstream: FakeUpstream, make_backend: MakeBackend
) -> None:
    upstream.script = ["drop", "ok"]
    stream = make_backend().stream(CHAT, PARAMS)
    assert [await anext(stream), await anext(stream)] == [TextDelta("Hello"), TextDelta(", wor")]
    with pytest.raises(UpstreamError, match="dropped the stream after 2 chunks"):
        await anext(stream)
    assert len(upstream.seen) == 1


async def test_no_retry_after_a_json_answer_started(
    upstream: FakeUpstream, make_backend: MakeBackend
) -> None:
    upstream.script = ["drop", "ok"]
    with pytest.raises(UpstreamError, match="dropped the connection before the end of its answer"):
        await make_backend().generate(CHAT, PARAMS)
    assert len(upstream.seen) == 1


@pytest.mark.parametrize("leaving", ["cancel-stream", "cancel-whole", "stop-reading-stream"])
async def test_a_client_leaving_closes_the_upstream_request(
    upstream: FakeUpstream, leaving: str
) -> None:
    """Our client left (its task cancelled, or its stream closed unfinished): the upstream
    request is closed at once, so the upstream sees its connection close and stops."""
    upstream.script = ["stall"]
    spec = ModelSpec(id="remote", backend=BackendKind.HTTP, source=upstream.url)
    async with UpstreamClient() as client, asyncio.timeout(5):
        backend = HttpBackend(spec, client=client)
        pool = client.upstream(upstream.url)
        if leaving == "stop-reading-stream":
            stream = backend.stream(CHAT, PARAMS)
            assert await anext(stream) == TextDelta("Hello")
            assert isinstance(stream, AsyncGenerator)
            await stream.aclose()
        else:
            call = asyncio.create_task(_answer(backend, streamed=leaving == "cancel-stream"))
            while not upstream.seen:
                await asyncio.sleep(0.01)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
        assert pool.open == 0  # the connection was closed, not kept for another request
        assert backend.status().details["in_flight"] == "0"
        while not upstream.hung_up:
            await asyncio.sleep(0.01)
    assert upstream.seen[0].body["stream"] is (leaving != "cancel-whole")


async def test_unreachable_upstream(make_backend: MakeBackend) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        with pytest.raises(UpstreamError, match=r"cannot reach the upstream .* after 2 attempts"):
            await make_backend(f"http://127.0.0.1:{port}", max_retries=1).generate(CHAT, PARAMS)


async def test_client_errors_become_invalid_requests(
    upstream: FakeUpstream, make_backend: MakeBackend
) -> None:
    upstream.script = ["400"]
    with pytest.raises(InvalidRequest, match="rejected the request: scripted 400"):
        await make_backend().generate(CHAT, PARAMS)
    assert len(upstream.seen) == 1


@pytest.mark.parametrize(
    ("behaviour", "streamed", "message"),
    [
        ("garbage", True, r"not an OpenAI stream chunk \(JSON is malformed: .*\): 'this is not"),
        ("garbage", False, r"not an OpenAI completion \(JSON is malformed: .*\): 'this is not"),
        ("html", True, "answered text/html instead of an event stream: '<html>Welcome to nginx!"),
        ("html", False, "answered text/html instead of JSON: '<html>Welcome to nginx!"),
    ],
)
async def test_garbage_is_an_upstream_error(
    upstream: FakeUpstream, make_backend: MakeBackend, behaviour: str, streamed: bool, message: str
) -> None:
    upstream.script = [behaviour]  # type: ignore[list-item]
    with pytest.raises(UpstreamError, match=message):
        await _answer(make_backend(), streamed=streamed)


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    ("chunk", "reason"),
    [
        pytest.param('{"choices": [], "x": ' + DEEP + "}", "nested too deeply", id="deep-nesting"),
        pytest.param(
            '{"choices": ["stop"]}', "Expected `object`, got `str`", id="choice-not-object"
        ),
        pytest.param(
            '{"choices": 5}', "Expected `array | null`, got `int`", id="choices-not-array"
        ),
        pytest.param(
            '{"choices": [{"finish_reason": 5}]}',
            "at `$.choices[0].finish_reason`",
            id="finish-int",
        ),
        pytest.param(
            '{"choices": [{"delta": {"content": 5}}]}',
            "at `$.choices[0].delta.content`",
            id="content-int",
        ),
        pytest.param(
            r'{"choices": [{"delta": {"content": "\ud800"}}]}', "ud800", id="lone-surrogate"
        ),
        pytest.param('{"choices": [], "usage": [7]}', "at `$.usage`", id="usage-array"),
        pytest.param(
            '{"choices": [], "usage": {"prompt_tokens": -1}}', ">= 0", id="negative-tokens"
        ),
        pytest.param(
            '{"choices": [], "usage": {"completion_tokens": 1' + "0" * 30 + "}}",
            "completion_tokens",
            id="huge-tokens",
        ),
    ],
)
@pytest.mark.parametrize(
    ("answers", "streamed"),
    [("sse", True), ("as asked", False), ("json", True)],
    ids=["streamed", "whole", "json-to-stream"],
)
async def test_a_malformed_chunk_is_an_upstream_error(
    upstream: FakeUpstream,
    make_backend: MakeBackend,
    chunk: str,
    reason: str,
    answers: Answers,
    streamed: bool,
) -> None:
    """In a stream it comes last, after the text and the finish reason; a JSON answer is
    all of it (with a chat answer's ``message`` for a stream's ``delta``). A bad shape
    anywhere is a 502 saying the answer was malformed, never an exception of the parser's."""
    upstream.script = ["malformed"]
    upstream.answers = answers
    if answers != "sse":
        chunk, reason = chunk.replace("delta", "message"), reason.replace("delta", "message")
    upstream.malformed = chunk
    with pytest.raises(UpstreamError) as raised:
        await _answer(make_backend(), streamed=streamed)
    assert upstream.seen[0].body["stream"] is streamed
    assert raised.value.kind is ErrorKind.UPSTREAM
    message = str(raised.value)
    assert message.startswith("the upstream of model 'remote' sent a malformed answer, not an")
    assert reason in message
    assert "Recursion" not in message


@pytest.mark.parametrize(
    "chunk", ['{"error": {"message": "overloaded", "code": 503}}', '{"error": "overloaded"}']
)
@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "whole"])
async def test_an_error_chunk_is_an_upstream_error(
    upstream: FakeUpstream, make_backend: MakeBackend, chunk: str, streamed: bool
) -> None:
    upstream.script = ["malformed"]
    upstream.malformed = chunk
    with pytest.raises(UpstreamError, match=r"model 'remote' failed: overloaded$"):
        await _answer(make_backend(), streamed=streamed)
    assert upstream.seen[0].body["stream"] is streamed


@pytest.mark.parametrize(
    "answer",
    [
        '{"choices": []}',
        '{"choices": [{"message": {"content": "hi"}, "finish_reason": null}]}',
        '{"usage": {"prompt_tokens": 1}}',
    ],
)
async def test_a_json_answer_without_a_finish_reason_is_an_upstream_error(
    upstream: FakeUpstream, make_backend: MakeBackend, answer: str
) -> None:
    upstream.script = ["malformed"]
    upstream.malformed = answer
    with pytest.raises(UpstreamError, match=r"model 'remote' answered without a finish reason$"):
        await make_backend().generate(CHAT, PARAMS)


async def _answer(backend: HttpBackend, *, streamed: bool) -> None:
    if streamed:
        async for _ in backend.stream(CHAT, PARAMS):
            pass
    else:
        await backend.generate(CHAT, PARAMS)


async def test_a_deeply_nested_error_body_is_reported_as_text(
    upstream: FakeUpstream, make_backend: MakeBackend
) -> None:
    upstream.script = ["500"]
    upstream.error_body = '{"error": ' + DEEP + "}"
    with pytest.raises(UpstreamError, match=r"HTTP 500: \{\"error\": \[\[\[") as raised:
        await make_backend(max_retries=0).generate(CHAT, PARAMS)
    assert raised.value.upstream_status == 500


@pytest.mark.parametrize("behaviour", ["slow", "stall"])  # no answer, half a JSON answer
async def test_slow_upstream_times_out(
    upstream: FakeUpstream, make_backend: MakeBackend, behaviour: Literal["slow", "stall"]
) -> None:
    upstream.script = [behaviour]
    with pytest.raises(GenerationTimeout, match="timed out"):
        await make_backend(read_timeout_s=0.2).generate(CHAT, PARAMS)
    assert len(upstream.seen) == 1


async def test_count_tokens_is_an_upper_bound(make_backend: MakeBackend) -> None:
    backend = make_backend()
    assert await backend.count_tokens(Prompt(text="héllo")) == 6
    assert await backend.count_tokens(CHAT) >= len("user") + len("Hi")
    assert backend.status().ready
