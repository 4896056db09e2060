"""Active health probes on a live gateway: a deployment that is the project's own server,
another process, probed every 0.2 s. Killed, its circuit opens with no client request;
restarted, it closes long before the cool-down a client's half-open probe would wait."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration.inference.fake_upstream import ThreadedUpstream
from integration.reliability.faultkit import bearer
from livesupport import LiveServer, running_server, start_server

pytestmark = pytest.mark.slow

COOLDOWN_S = 600
"""So long that only a probe can close the circuit within the test."""
INTERVAL_S = 0.2


@dataclass
class Probed:
    gateway: LiveServer
    own: LiveServer


@pytest.fixture(scope="module")
def probed(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Probed]:
    root = tmp_path_factory.mktemp("routing-probe")
    loopback = ThreadedUpstream()
    loopback.start()
    (root / "own").mkdir()
    (root / "gateway").mkdir()
    try:
        with running_server(root / "own", demo_model_dir) as own:
            models = root / "models.toml"
            models.write_text(
                f"""
[[models]]
id = "probed"
routing = "ordered"
  [[models.deployments]]
  name = "own"
  backend = "http"
  source = "{own.base_url}"
  upstream_model = "demo-tiny-llama"
  api_key_env = "PROBE_TEST_OWN_KEY"
  probe_interval_s = {INTERVAL_S}
  probe_path = "/readyz"
  connect_timeout_s = 1
  [[models.deployments]]
  name = "loopback"
  backend = "http"
  source = "{loopback.url}"
"""
            )
            with running_server(
                root / "gateway",
                demo_model_dir,
                LLMSERVER_PROFILE="none",
                LLMSERVER_MODELS_FILE=str(models),
                LLMSERVER_CACHE_ENABLED="false",
                LLMSERVER_ROUTING_FAILURE_THRESHOLD="2",
                LLMSERVER_ROUTING_COOLDOWN_S=str(COOLDOWN_S),
                PROBE_TEST_OWN_KEY=own.keys.admin,
            ) as gateway:
                try:
                    yield Probed(gateway, own)
                finally:
                    own.process.kill()  # a restarted one: running_server stops the first
                    own.process.wait(10)
    finally:
        loopback.stop()


def deployments(gateway: LiveServer) -> dict[str, dict[str, Any]]:
    answer = httpx.get(gateway.base_url + "/admin/models", headers=bearer(gateway.admin_key))
    [found] = [m for m in answer.json()["data"] if m["id"] == "probed"]
    return {d["name"]: d for d in found["deployments"]}


def wait_for_state(gateway: LiveServer, state: str, within_s: float) -> float:
    """Seconds until deployment ``own`` is in ``state``."""
    started = time.monotonic()
    while deployments(gateway)["own"]["state"] != state:
        assert time.monotonic() - started < within_s, deployments(gateway)
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_killed_deployment_s_circuit_opens_without_traffic_and_closes_once_it_is_back(
    probed: Probed,
) -> None:
    gateway, own = probed.gateway, probed.own
    assert deployments(gateway)["own"]["state"] == "closed"
    requests = deployments(gateway)["own"]["requests"]

    own.process.send_signal(signal.SIGKILL)
    own.process.wait(10)
    opened_after = wait_for_state(gateway, "open", within_s=10)
    assert deployments(gateway)["own"]["requests"] == requests  # no client request at all
    ready = httpx.get(gateway.base_url + "/readyz").json()
    assert "probed: own open, loopback closed" in ready["checks"]["models"]["detail"]
    # Meanwhile clients are served by the other deployment.
    body = {"model": "probed", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    answer = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        headers=bearer(gateway.user_key),
        json=body,
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert deployments(gateway)["own"]["requests"] == requests

    port = int(own.base_url.rsplit(":", 1)[1])
    own.process = start_server(own.env, own.log_path, port)  # returns once its /readyz is 200
    closed_after = wait_for_state(gateway, "closed", within_s=10)
    print(
        f"\nprobe every {INTERVAL_S}s: open {opened_after:.2f}s after the kill, closed "
        f"{closed_after:.2f}s after the restart was ready (cool-down {COOLDOWN_S}s)"
    )
    answer = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        headers=bearer(gateway.user_key),
        json=body,
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert deployments(gateway)["own"]["requests"] == requests + 1  # first in order again
