"""OpenTelemetry traces of a live server, exported over OTLP/HTTP to a receiver in the test.

The server runs the demo model and an ``http`` model whose upstream is a small server of
the test's own; the receiver decodes the real protobuf. Each test sends requests with a
request id of its own and reads back the trace whose root span carries it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from integration.observability.otlp_receiver import (
    EchoUpstream,
    OtlpReceiver,
    ReceivedSpan,
    echo_upstream,
    hanging_collector,
    otlp_receiver,
)
from livesupport import LiveServer, running_server
from traced_steps import miss_steps

pytestmark = pytest.mark.slow

MODEL = "demo-tiny-llama"
ECHO = "echo"
UPSTREAM_SECRET = "upstream-secret-" + "u" * 24
STATUS_UNSET = 0  # neither failed nor marked ok
STATUS_ERROR = 2
INTERNAL = ProtoSpan.SpanKind.SPAN_KIND_INTERNAL
CLIENT = ProtoSpan.SpanKind.SPAN_KIND_CLIENT


class Traced:
    def __init__(self, server: LiveServer, receiver: OtlpReceiver, upstream: EchoUpstream) -> None:
        self.server = server
        self.receiver = receiver
        self.upstream = upstream

    def post(
        self, body: dict[str, Any], *, headers: dict[str, str] | None = None, status: int = 200
    ) -> tuple[str, httpx.Response]:
        """The request's id and its answer (a stream read to its end), which must have
        ``status``."""
        request_id = uuid.uuid4().hex
        response = httpx.post(
            self.server.base_url + "/v1/chat/completions",
            json=body,
            headers={
                "Authorization": f"Bearer {self.server.user_key}",
                "X-Request-ID": request_id,
                **(headers or {}),
            },
            timeout=60,
        )
        assert response.status_code == status, response.text
        return request_id, response


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, demo_model_dir: Path) -> Iterator[Traced]:
    root = tmp_path_factory.mktemp("traced")
    with otlp_receiver() as receiver, echo_upstream() as upstream:
        models = root / "models.toml"
        models.write_text(
            "[[models]]\n"
            f'id = "{ECHO}"\n'
            'backend = "http"\n'
            f'source = "{upstream.url}"\n'
            'api_key_env = "UPSTREAM_KEY"\n'
            "context_length = 512\n"
        )
        with running_server(
            root,
            demo_model_dir,
            LLMSERVER_OTEL_ENDPOINT=receiver.url,
            LLMSERVER_MODELS_FILE=str(models),
            UPSTREAM_KEY=UPSTREAM_SECRET,
            OTEL_BSP_SCHEDULE_DELAY="50",
        ) as server:
            yield Traced(server, receiver, upstream)


def chat(model: str, content: str, **options: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **options}


def root_of(spans: list[ReceivedSpan]) -> ReceivedSpan:
    (root,) = [s for s in spans if s.parent_id == "" or s.is_server]
    assert root.is_server
    assert root.parent_id == ""
    return root


def children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [s for s in spans if s.parent_id == parent.span_id]


def named(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    (span,) = [s for s in spans if s.name == name]
    return span


def test_a_completion_is_one_span_with_a_child_per_step(traced: Traced) -> None:
    request_id, response = traced.post(
        chat(MODEL, f"trace me {uuid.uuid4().hex}", max_tokens=3, temperature=0)
    )
    usage = response.json()["usage"]
    spans = traced.receiver.trace(request_id)
    root = root_of(spans)
    assert root.name == "POST /v1/chat/completions"
    assert root.service == "llmserver"
    assert {s.trace_id for s in spans} == {root.trace_id}
    assert root.attributes["llmserver.request_id"] == request_id
    assert root.attributes["http.response.status_code"] == 200
    assert root.attributes["gen_ai.operation.name"] == "chat"
    assert root.attributes["gen_ai.request.model"] == MODEL
    assert root.attributes["llmserver.cache"] == "MISS"
    assert root.attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert root.attributes["llmserver.key_prefix"] == traced.server.user_key.split("_")[1]
    assert {s.status_code for s in spans} == {STATUS_UNSET}

    steps = children(spans, root)
    assert sorted(s.name for s in steps) == sorted(miss_steps(MODEL))
    lookups = {s.attributes["llmserver.cache.layer"]: s for s in steps if "cache" in s.name}
    assert {layer: s.attributes["llmserver.cache.hit"] for layer, s in lookups.items()} == {
        "hot": False,
        "durable": False,
    }
    assert named(steps, "llmserver.auth").attributes["llmserver.key_role"] == "user"
    assert named(steps, "llmserver.rate_limit").attributes["llmserver.admitted"] is True

    inference = named(steps, f"chat {MODEL}")
    assert inference.kind == INTERNAL  # the model runs in this process
    assert inference.attributes["gen_ai.operation.name"] == "chat"
    assert inference.attributes["gen_ai.provider.name"] == "llmserver.torch"
    assert inference.attributes["gen_ai.request.model"] == MODEL
    assert inference.attributes["gen_ai.request.max_tokens"] == 3
    assert inference.attributes["gen_ai.request.temperature"] == 0.0
    assert inference.attributes["gen_ai.request.stream"] is False
    assert inference.attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert inference.attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    finish = response.json()["choices"][0]["finish_reason"]
    assert inference.attributes["gen_ai.response.finish_reasons"] == (finish,)
    assert [s.name for s in children(spans, inference)] == ["llmserver.queue.wait"]


def test_a_stream_is_traced_to_its_end_with_its_first_token(traced: Traced) -> None:
    request_id, response = traced.post(
        chat(
            MODEL,
            f"stream me {uuid.uuid4().hex}",
            max_tokens=4,
            temperature=0.9,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert response.text.endswith("data: [DONE]\n\n")
    spans = traced.receiver.trace(request_id)
    root = root_of(spans)
    inference = named(children(spans, root), f"chat {MODEL}")
    assert {s.status_code for s in spans} == {STATUS_UNSET}
    assert inference.attributes["gen_ai.request.stream"] is True
    assert 0 < inference.attributes["gen_ai.response.time_to_first_chunk"] < 60
    assert inference.attributes["gen_ai.usage.output_tokens"] >= 1
    assert inference.attributes["gen_ai.response.finish_reasons"][0] in {"stop", "length"}
    output_tokens = inference.attributes["gen_ai.usage.output_tokens"]
    assert root.attributes["gen_ai.usage.output_tokens"] == output_tokens
    assert [s.name for s in children(spans, inference)] == ["llmserver.queue.wait"]


def test_a_cache_hit_has_no_inference(traced: Traced) -> None:
    body = chat(MODEL, f"twice {uuid.uuid4().hex}", max_tokens=2, temperature=0)
    traced.post(body)
    request_id, _ = traced.post(body)
    spans = traced.receiver.trace(request_id)
    root = root_of(spans)
    assert root.attributes["llmserver.cache"] == "HIT"
    (lookup,) = [s for s in spans if s.name == "llmserver.cache.lookup"]
    assert lookup.attributes == {"llmserver.cache.layer": "hot", "llmserver.cache.hit": True}
    # The hot entry carries its prompt's count (README: count_tokens is a miss's span).
    assert not [s for s in spans if s.name.startswith("chat ") or s.name.endswith("count_tokens")]


def test_a_callers_traceparent_makes_the_request_its_child(traced: Traced) -> None:
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    request_id, _ = traced.post(
        chat(MODEL, "joined", max_tokens=2, temperature=0.5),
        headers={"traceparent": f"00-{trace_id}-{parent_id}-01"},
    )
    root = next(s for s in traced.receiver.trace(request_id) if s.is_server)
    assert (root.trace_id, root.parent_id) == (trace_id, parent_id)


def test_a_trace_its_caller_left_unsampled_is_not_recorded_but_still_propagated(
    traced: Traced,
) -> None:
    trace_id, parent_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    traced.post(
        chat(ECHO, "unsampled", max_tokens=2),
        headers={"traceparent": f"00-{trace_id}-{parent_id}-00"},
    )
    version, seen_trace, _, flags = traced.upstream.headers[-1]["traceparent"].split("-")
    assert (version, seen_trace, flags) == ("00", trace_id, "00")
    traced.receiver.trace(traced.post(chat(ECHO, "sampled", max_tokens=2))[0])  # a later one
    assert not [s for s in traced.receiver.spans if s.trace_id == trace_id]


@pytest.mark.parametrize("stream", [False, True])
def test_an_http_upstream_gets_the_trace_in_its_traceparent(traced: Traced, stream: bool) -> None:
    request_id, _ = traced.post(chat(ECHO, "to the upstream", max_tokens=5, stream=stream))
    seen = traced.upstream.headers[-1]
    assert seen["authorization"] == f"Bearer {UPSTREAM_SECRET}"
    version, trace_id, parent_id, flags = seen["traceparent"].split("-")
    assert version == "00"
    assert int(flags, 16) & 1  # sampled

    spans = traced.receiver.trace(request_id)
    root = root_of(spans)
    assert trace_id == root.trace_id
    inference = named(children(spans, root), f"chat {ECHO}")
    assert inference.kind == CLIENT  # a call to another process, over HTTP
    assert inference.attributes["gen_ai.provider.name"] == "llmserver.http"
    assert inference.attributes["server.address"] == "127.0.0.1"
    assert inference.attributes["server.port"] == int(traced.upstream.url.rsplit(":", 1)[1])
    (call,) = children(spans, inference)
    assert call.span_id == parent_id
    assert call.name == "POST"
    assert call.kind == CLIENT
    assert call.attributes["url.full"] == f"{traced.upstream.url}/v1/chat/completions"
    assert call.attributes["server.address"] == "127.0.0.1"
    assert call.attributes["http.response.status_code"] == 200
    assert inference.attributes["gen_ai.usage.output_tokens"] == 3  # the upstream's count


def test_each_retry_of_an_upstream_is_a_client_span_with_its_own_traceparent(
    traced: Traced,
) -> None:
    traced.upstream.failures = [503]  # answered by the retry
    seen = len(traced.upstream.headers)
    request_id, _ = traced.post(chat(ECHO, "retried", max_tokens=5))
    sent = [h["traceparent"].split("-")[2] for h in traced.upstream.headers[seen:]]
    spans = traced.receiver.trace(request_id)
    inference = named(children(spans, root_of(spans)), f"chat {ECHO}")
    calls = children(spans, inference)
    assert [c.span_id for c in calls] == sent  # each request its own span, in order
    assert len(set(sent)) == 2
    assert [c.attributes["http.response.status_code"] for c in calls] == [503, 200]
    assert [c.status_code for c in calls] == [STATUS_ERROR, STATUS_UNSET]
    assert inference.status_code == STATUS_UNSET


def wait_for(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def durable_misses_outside(receiver: OtlpReceiver, trace_id: str) -> int:
    """How many durable-cache misses of other traces than ``trace_id`` have come."""
    return sum(
        1
        for s in list(receiver.spans)
        if s.trace_id != trace_id
        and s.attributes.get("llmserver.cache.layer") == "durable"
        and s.attributes.get("llmserver.cache.hit") is False
    )


def test_a_shared_inference_belongs_to_the_trace_of_the_request_that_started_it(
    traced: Traced,
) -> None:
    body = chat(ECHO, f"shared {uuid.uuid4().hex}", max_tokens=5, temperature=0)
    seen = len(traced.upstream.headers)
    traced.upstream.gate = gate = threading.Event()
    try:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(traced.post, body)
            wait_for(lambda: len(traced.upstream.headers) > seen)
            first_trace = traced.upstream.headers[seen]["traceparent"].split("-")[1]
            before = durable_misses_outside(traced.receiver, first_trace)
            second = pool.submit(traced.post, body)
            # The second request joins the flight right after its durable lookup, with no
            # wait between: once that span is exported, it is waiting on the first's.
            wait_for(lambda: durable_misses_outside(traced.receiver, first_trace) > before)
            gate.set()
            first_id, second_id = first.result()[0], second.result()[0]
    finally:
        traced.upstream.gate = None
        gate.set()
    assert len(traced.upstream.headers) == seen + 1  # one inference answered both
    started = traced.receiver.trace(first_id)
    inference = named(started, f"chat {ECHO}")
    assert inference.parent_id == root_of(started).span_id
    joined = traced.receiver.trace(second_id)
    assert joined[0].trace_id != inference.trace_id
    # The joiner missed both cache layers and waited on the flight: no inference of its own.
    assert sorted(s.name for s in children(joined, root_of(joined))) == sorted(
        miss_steps(ECHO)[:-1]
    )
    assert root_of(joined).attributes["llmserver.cache"] == "HIT"


def test_a_client_error_is_recorded_by_its_code_and_a_server_error_fails_the_request(
    traced: Traced,
) -> None:
    key = traced.server.user_key
    wrong = key[:-1] + ("b" if key.endswith("a") else "a")  # well formed, not issued
    refused_id, _ = traced.post(
        chat(MODEL, "wrong key", max_tokens=2),
        headers={"Authorization": f"Bearer {wrong}"},
        status=401,
    )
    spans = traced.receiver.trace(refused_id)
    root = root_of(spans)
    assert root.attributes["http.response.status_code"] == 401
    assert root.attributes["llmserver.error_code"] == "invalid_api_key"
    assert (root.status_code, root.attributes.get("error.type")) == (STATUS_UNSET, None)

    traced.upstream.failures = [502, 502, 502]  # the first try and both retries
    failed_id, _ = traced.post(chat(ECHO, "upstream down", max_tokens=2), status=502)
    spans = traced.receiver.trace(failed_id)
    root = root_of(spans)
    assert root.attributes["http.response.status_code"] == 502
    assert root.attributes["llmserver.error_code"] == "upstream_error"
    assert (root.status_code, root.attributes["error.type"]) == (STATUS_ERROR, "upstream_error")
    inference = named(children(spans, root), f"chat {ECHO}")
    assert (inference.status_code, inference.attributes["error.type"]) == (
        STATUS_ERROR,
        "upstream_error",
    )
    assert len(children(spans, inference)) == 3


def test_no_secret_and_no_prompt_text_is_exported(traced: Traced) -> None:
    prompts = [f"private words {uuid.uuid4().hex}" for _ in range(3)]
    ids = [
        traced.post(chat(MODEL, prompts[0], max_tokens=2, temperature=0))[0],
        traced.post(chat(MODEL, prompts[1], max_tokens=2, stream=True))[0],
        traced.post(chat(ECHO, prompts[2], max_tokens=2, stop=["private stop"]))[0],
    ]
    for request_id in ids:
        traced.receiver.trace(request_id)
    exported = traced.receiver.all_bytes()
    server = traced.server
    for secret in (server.user_key, UPSTREAM_SECRET, *prompts, "private stop", "Bearer"):
        assert secret.encode() not in exported
    assert server.user_key.split("_")[1].encode() in exported  # the prefix is there


def test_spans_carry_text_with_log_bodies_and_are_flushed_at_shutdown(
    tmp_path: Path, demo_model_dir: Path
) -> None:
    prompt = f"logged words {uuid.uuid4().hex}"
    with otlp_receiver() as receiver:
        with running_server(
            tmp_path,
            demo_model_dir,
            LLMSERVER_OTEL_ENDPOINT=receiver.url + "/v1/traces",
            LLMSERVER_OTEL_SERVICE_NAME="gateway-under-test",
            LLMSERVER_LOG_BODIES="true",
            # Nothing is exported before shutdown unless shutdown flushes it.
            OTEL_BSP_SCHEDULE_DELAY="600000",
        ) as server:
            traced = Traced(server, receiver, EchoUpstream())
            request_id, response = traced.post(chat(MODEL, prompt, max_tokens=3, temperature=0))
            time.sleep(1)
            assert receiver.spans == [], "exported before shutdown"
        try:
            spans = receiver.trace(request_id, timeout_s=10)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the server's log:\n{server.logs()[-4000:]}") from None
    inference = named(spans, f"chat {MODEL}")
    (asked,) = json.loads(inference.attributes["gen_ai.input.messages"])
    assert asked == {"role": "user", "parts": [{"type": "text", "content": prompt}]}
    (answered,) = json.loads(inference.attributes["gen_ai.output.messages"])
    answer = response.json()["choices"][0]["message"]["content"]
    assert answered["parts"] == [{"type": "text", "content": answer}]
    assert {s.service for s in spans} == {"gateway-under-test"}
    assert server.user_key.encode() not in receiver.all_bytes()


def test_a_collector_that_hangs_delays_no_request_and_not_the_shutdown(
    tmp_path: Path, demo_model_dir: Path
) -> None:
    with (
        hanging_collector() as collector,
        running_server(
            tmp_path,
            demo_model_dir,
            LLMSERVER_OTEL_ENDPOINT=collector.url,
            OTEL_BSP_SCHEDULE_DELAY="50",
        ) as server,
    ):
        traced = Traced(server, OtlpReceiver(), EchoUpstream())
        traced.post(chat(MODEL, "first", max_tokens=2))
        deadline = time.monotonic() + 10
        while collector.requests == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert collector.requests >= 1  # an export is stuck: the exporter waits 10 s
        for n in range(5):
            started = time.monotonic()
            traced.post(chat(MODEL, f"while it hangs {n}", max_tokens=2))
            assert time.monotonic() - started < 5
        process = server.process
    # Stopped by SIGTERM on its own, within the stop's 30 s, not killed: the last export
    # is given up after a few seconds.
    assert process.returncode == 0
