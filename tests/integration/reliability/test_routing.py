"""Routing across real processes: a gateway whose models have several deployments, one the
project's own server (another process, serving the demo model) and others a misbehaving
loopback upstream. Clients are httpx and the openai SDK against the live gateway."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from integration.inference.fake_upstream import FakeUpstream, ThreadedUpstream
from integration.reliability.faultkit import bearer, create_key, usage_of
from livesupport import (
    TEST_SECRET,
    LiveServer,
    closed_after_test,
    free_port,
    issue_keys,
    migrate,
    running_server,
    server_env,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.slow

COOLDOWN_S = 2.0


@dataclass
class Routed:
    gateway: LiveServer
    own: LiveServer
    """The project's own server: deployment ``own`` of models ``chat`` and ``hang-first``."""
    healthy: FakeUpstream
    flaky: FakeUpstream
    hanging: FakeUpstream


def models_file(path: Path, own: str, healthy: str, flaky: str, hanging: str) -> Path:
    path.write_text(
        f"""
[[models]]
id = "chat"
routing = "least-busy"
  [[models.deployments]]
  name = "own"
  backend = "http"
  source = "{own}"
  upstream_model = "demo-tiny-llama"
  api_key_env = "ROUTING_TEST_OWN_KEY"
  [[models.deployments]]
  name = "loopback"
  backend = "http"
  source = "{healthy}"

[[models]]
id = "flaky"
routing = "ordered"
  [[models.deployments]]
  name = "flaky-a"
  backend = "http"
  source = "{flaky}"
  [[models.deployments]]
  name = "flaky-b"
  backend = "http"
  source = "{flaky}"
  [[models.deployments]]
  name = "flaky-c"
  backend = "http"
  source = "{flaky}"

[[models]]
id = "hang-first"
routing = "ordered"
  [[models.deployments]]
  name = "hangs"
  backend = "http"
  source = "{hanging}"
  first_byte_timeout_s = 1
  [[models.deployments]]
  name = "own"
  backend = "http"
  source = "{own}"
  upstream_model = "demo-tiny-llama"
  api_key_env = "ROUTING_TEST_OWN_KEY"
"""
    )
    return path


@pytest.fixture(scope="module")
def routed(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Routed]:
    root = tmp_path_factory.mktemp("routing")
    fakes = [ThreadedUpstream(), ThreadedUpstream(), ThreadedUpstream()]
    for fake in fakes:
        fake.start()
    healthy, flaky, hanging = fakes
    hanging.fake.script = ["slow"]
    own_root = root / "own"
    own_root.mkdir()
    try:
        with running_server(own_root, demo_model_dir) as own:
            url = f"sqlite+aiosqlite:///{root / 'gateway.db'}"
            env = server_env(
                url,
                demo_model_dir,
                LLMSERVER_PROFILE="none",
                LLMSERVER_MODELS_FILE=str(
                    models_file(root / "models.toml", own.base_url, *(f.url for f in fakes))
                ),
                LLMSERVER_ROUTING_COOLDOWN_S=str(COOLDOWN_S),
                LLMSERVER_ROUTING_FAILURE_THRESHOLD="2",
                LLMSERVER_ROUTING_BACKOFF_S="0.01",
                LLMSERVER_CACHE_ENABLED="false",
                ROUTING_TEST_OWN_KEY=own.keys.admin,
            )
            migrate(url)
            keys = asyncio.run(issue_keys(url, TEST_SECRET))
            port = free_port()
            log = root / "gateway.log"
            process = start_server(env, log, port)
            gateway = LiveServer(f"http://127.0.0.1:{port}", keys, url, log, env, process)
            try:
                yield Routed(gateway, own, healthy.fake, flaky.fake, hanging.fake)
            finally:
                stop_server(process)
                stop_server(own.process)  # a restarted one: running_server stops the first
    finally:
        for fake in fakes:
            fake.stop()


def deployments(gateway: LiveServer, model: str) -> dict[str, dict[str, Any]]:
    answer = httpx.get(gateway.base_url + "/admin/models", headers=bearer(gateway.admin_key))
    [found] = [m for m in answer.json()["data"] if m["id"] == model]
    return {d["name"]: d for d in found["deployments"]}


def ask(gateway: LiveServer, model: str, key: str | None = None) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    return httpx.post(
        gateway.base_url + "/v1/chat/completions",
        headers=bearer(key or gateway.user_key),
        json=body,
        timeout=60,
    )


def test_killing_one_upstream_mid_load_fails_no_request_and_it_returns_after_cooldown(
    routed: Routed,
) -> None:
    gateway, own = routed.gateway, routed.own
    statuses: list[int] = []

    def load(n: int) -> None:
        for _ in range(n):
            statuses.append(ask(gateway, "chat").status_code)

    with ThreadPoolExecutor(4) as pool:
        running = [pool.submit(load, 15) for _ in range(4)]
        while len(statuses) < 8:
            time.sleep(0.05)
        assert deployments(gateway, "chat")["own"]["requests"] > 0  # both took traffic
        killed = own.process
        killed.send_signal(signal.SIGKILL)  # mid-load, answers in flight
        for future in running:
            future.result()
    killed.wait(10)
    assert statuses == [200] * 60
    assert deployments(gateway, "chat")["own"]["state"] in ("open", "half-open")
    assert httpx.get(gateway.base_url + "/readyz").status_code == 200  # loopback is healthy

    port = int(own.base_url.rsplit(":", 1)[1])
    own.process = start_server(own.env, own.log_path, port)
    before = deployments(gateway, "chat")["own"]["requests"]
    deadline = time.monotonic() + COOLDOWN_S + 30
    while deployments(gateway, "chat")["own"]["state"] != "closed":
        assert time.monotonic() < deadline, deployments(gateway, "chat")
        assert ask(gateway, "chat").status_code == 200
        time.sleep(0.1)
    assert deployments(gateway, "chat")["own"]["requests"] > before
    ready = httpx.get(gateway.base_url + "/readyz").json()
    assert "chat: own closed, loopback closed" in ready["checks"]["models"]["detail"]


def test_three_attempts_hold_one_rpm_slot_and_one_quota_charge(routed: Routed) -> None:
    gateway = routed.gateway
    # Three deployments on one upstream that fails twice: each attempt goes to the next.
    routed.flaky.script = ["500", "500", "ok"]
    key = asyncio.run(
        create_key(gateway.base_url, gateway.admin_key, "flaky", rpm_limit=2, quota_tokens=1000)
    )
    secret, key_id = key["key"], key["details"]["id"]
    first = ask(gateway, "flaky", secret)
    assert first.status_code == 200, first.text
    assert len(routed.flaky.seen) == 3
    usage = asyncio.run(usage_of(gateway.base_url, gateway.admin_key, key_id))
    assert usage["requests"] == 1
    assert usage["used_tokens"] == first.json()["usage"]["total_tokens"]
    assert usage["reserved_tokens"] == 0
    assert ask(gateway, "flaky", secret).status_code == 200  # the second of 2 RPM
    assert ask(gateway, "flaky", secret).status_code == 429  # attempts took no slots

    def logged() -> list[dict[str, Any]]:
        rows = httpx.get(
            gateway.base_url + "/admin/logs",
            headers=bearer(gateway.admin_key),
            params={"key_id": key_id, "status": 200},
        ).json()["data"]
        return list(rows)

    deadline = time.monotonic() + 10
    while len(logged()) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert sorted((r["deployment"], r["attempts"]) for r in logged()) == [
        ("flaky-a", 1),
        ("flaky-c", 3),
    ]


def test_a_stream_fails_over_before_its_first_byte_with_the_openai_sdk(routed: Routed) -> None:
    gateway = routed.gateway
    client = closed_after_test(
        openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=gateway.user_key)
    )
    started = time.monotonic()
    stream = client.chat.completions.create(
        model="hang-first",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    client.close()
    assert time.monotonic() - started < 20
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length")
    assert len(routed.hanging.seen) >= 1
    assert deployments(gateway, "hang-first")["own"]["requests"] >= 1
