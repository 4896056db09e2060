"""OpenTelemetry traces of calls to an ``http`` model's upstream: the trace travels in the
upstream's traceparent, each retry is a client span, and an inference shared by several
requests belongs to the trace of the one that started it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from integration.observability.otlp_receiver import OtlpReceiver
from integration.observability.traced_server import (
    CLIENT,
    ECHO,
    STATUS_ERROR,
    STATUS_UNSET,
    UPSTREAM_SECRET,
    Traced,
    chat,
    children,
    named,
    root_of,
    traced_server,
    wait_for,
)
from traced_steps import miss_steps

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, demo_model_dir: Path) -> Iterator[Traced]:
    with traced_server(tmp_path_factory.mktemp("traced"), demo_model_dir) as traced:
        yield traced


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
