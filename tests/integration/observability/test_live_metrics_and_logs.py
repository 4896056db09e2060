"""Metrics and logs of a live server after real traffic."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from integration.ops.opstools import (
    PROMETHEUS_SYNTHETIC,
    exported_metric_names,
    metric_names_in_dashboards,
)
from livesupport import LiveServer

MODEL = "demo-tiny-llama"


def scrape(live_server: LiveServer) -> dict[str, float]:
    text = httpx.get(live_server.base_url + "/metrics").text
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name + json.dumps(sample.labels, sort_keys=True)
            samples[key] = sample.value
    return samples


def total(samples: dict[str, float], name: str) -> float:
    return sum(v for k, v in samples.items() if k.startswith(name + "{"))


def series_count(live_server: LiveServer) -> int:
    return len(scrape(live_server))


def chat(live_server: LiveServer, **body: Any) -> httpx.Response:
    payload = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 2}
    payload.update(body)
    return httpx.post(
        live_server.base_url + "/v1/chat/completions",
        json=payload,
        headers={"Authorization": f"Bearer {live_server.user_key}"},
        timeout=60,
    )


def test_histograms_and_counters_move_with_traffic(live_server: LiveServer) -> None:
    before = scrape(live_server)
    content = uuid.uuid4().hex
    assert (
        chat(
            live_server, messages=[{"role": "user", "content": content}], temperature=0
        ).status_code
        == 200
    )
    assert (
        chat(
            live_server, messages=[{"role": "user", "content": content}], temperature=0
        ).status_code
        == 200
    )
    stream = chat(live_server, stream=True, temperature=0.9)
    assert stream.status_code == 200
    after = scrape(live_server)
    assert (
        total(after, "llmserver_http_request_duration_seconds_count")
        >= total(before, "llmserver_http_request_duration_seconds_count") + 3
    )
    assert total(after, "llmserver_completion_tokens_total") > total(
        before, "llmserver_completion_tokens_total"
    )
    assert total(after, "llmserver_time_to_first_token_seconds_count") > total(
        before, "llmserver_time_to_first_token_seconds_count"
    )
    hits = 'llmserver_cache_lookups_total{"layer": "hot", "result": "hit"}'
    assert after.get(hits, 0) > before.get(hits, 0)


def test_a_shared_system_prompt_counts_prefix_cache_hits(live_server: LiveServer) -> None:
    labels = json.dumps({"model": MODEL})
    hits = f"llmserver_prefix_cache_hit_tokens_total{labels}"
    system = {"role": "system", "content": f"{uuid.uuid4().hex} Answer briefly. " * 8}
    before = scrape(live_server)
    for question in ("hello", "and again"):
        messages = [system, {"role": "user", "content": question}]
        assert chat(live_server, messages=messages, temperature=0.9).status_code == 200
    after = scrape(live_server)
    # The second request reuses at least the system prompt's first 16-token block.
    assert after[hits] - before.get(hits, 0) >= 16
    assert f"llmserver_prefix_cache_bytes{labels}" in after


def test_every_dashboard_metric_is_exported_after_traffic(live_server: LiveServer) -> None:
    chat(live_server, temperature=0)
    chat(live_server, temperature=0)
    exported = exported_metric_names(httpx.get(live_server.base_url + "/metrics").text)
    missing = metric_names_in_dashboards() - exported - PROMETHEUS_SYNTHETIC
    assert not missing, f"dashboards query metrics the live app does not export: {sorted(missing)}"


@pytest.mark.slow
def test_cardinality_stays_bounded_with_random_users_and_models(live_server: LiveServer) -> None:
    chat(live_server, temperature=0, user="warmup")
    before = series_count(live_server)
    with httpx.Client(timeout=60) as client:
        for i in range(1000):
            model = MODEL if i % 2 else f"no-such-model-{uuid.uuid4().hex}"
            client.post(
                live_server.base_url + "/v1/chat/completions",
                json={
                    "model": model,
                    "messages": [{"role": "user", "content": "cardinality"}],
                    "max_tokens": 1,
                    "temperature": 0,
                    "user": uuid.uuid4().hex,
                },
                headers={"Authorization": f"Bearer {live_server.user_key}"},
            )
    after = series_count(live_server)
    assert after - before < 40, f"{after - before} new series after 1,000 requests"


def test_logs_carry_no_prompt_text_or_key_secret(live_server: LiveServer) -> None:
    secret_prompt = f"my private prompt {uuid.uuid4().hex}"
    assert (
        chat(live_server, messages=[{"role": "user", "content": secret_prompt}]).status_code == 200
    )
    logs = live_server.logs()
    assert secret_prompt not in logs
    assert live_server.user_key not in logs
    assert live_server.user_key.split("_")[1] in logs  # the public prefix identifies the key
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("event") == "request"]
    assert access
    fields = set(access[-1])
    assert {"request_id", "status", "latency_ms", "key_prefix", "model", "cache"} <= fields
