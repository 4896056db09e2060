"""OpenTelemetry traces of a live server, exported over OTLP/HTTP to a receiver in the test.

The server runs the demo model and an ``http`` model whose upstream is a small server of
the test's own; the receiver decodes the real protobuf. Each test sends requests with a
request id of its own and reads back the trace whose root span carries it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.observability.otlp_receiver import (
    EchoUpstream,
    OtlpReceiver,
    hanging_collector,
    otlp_receiver,
)
from integration.observability.traced_server import (
    ECHO,
    INTERNAL,
    MODEL,
    STATUS_ERROR,
    STATUS_UNSET,
    UPSTREAM_SECRET,
    Traced,
    chat,
    children,
    named,
    root_of,
    traced_server,
)
from livesupport import running_server
from traced_steps import miss_steps

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, demo_model_dir: Path) -> Iterator[Traced]:
    with traced_server(tmp_path_factory.mktemp("traced"), demo_model_dir) as traced:
        yield traced


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
