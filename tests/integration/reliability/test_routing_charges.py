"""What a routed request is charged and logged, on a live gateway in front of real
loopback upstreams (one answering, one failing with 500, a port nobody listens on): the
prices of what answered (a fallback model's, a deployment's own), held in full by the
budget before the call, and for a request nothing answered, the row names the last
deployment tried and the attempts made."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration.inference.fake_upstream import FakeUpstream, ThreadedUpstream
from integration.reliability.faultkit import bearer, create_key
from livesupport import LiveServer, free_port, running_server

pytestmark = pytest.mark.slow

# Dollars per million tokens. The loopback upstream reports 7 prompt and 4 completion tokens.
CHEAP = (Decimal(1), Decimal(2))
DEAR = (Decimal(100), Decimal(200))
OWN_INPUT = Decimal(50)
PROMPT, COMPLETION = 7, 4


def cost(input_price: Decimal, output_price: Decimal) -> Decimal:
    return (PROMPT * input_price + COMPLETION * output_price) / 10**6


MODELS = """
[[models]]
id = "cheap"
routing = "ordered"
fallbacks = ["dear"]
input_price_per_mtok = {cheap_in}
output_price_per_mtok = {cheap_out}
  [[models.deployments]]
  name = "failing"
  backend = "http"
  source = "{failing}"

[[models]]
id = "dear"
backend = "http"
source = "{healthy}"
input_price_per_mtok = {dear_in}
output_price_per_mtok = {dear_out}

[[models]]
id = "cheap-cut"
fallbacks = ["dear-cut"]
input_price_per_mtok = {cheap_in}
output_price_per_mtok = {cheap_out}
  [[models.deployments]]
  name = "failing"
  backend = "http"
  source = "{failing}"

[[models]]
id = "dear-cut"
backend = "http"
source = "{dropping}"
input_price_per_mtok = {dear_in}
output_price_per_mtok = {dear_out}

[[models]]
id = "split"
routing = "ordered"
input_price_per_mtok = {cheap_in}
output_price_per_mtok = {cheap_out}
  [[models.deployments]]
  name = "failing"
  backend = "http"
  source = "{failing}"
  [[models.deployments]]
  name = "own-price"
  backend = "http"
  source = "{healthy}"
  input_price_per_mtok = {own_in}

[[models]]
id = "down"
routing = "ordered"
  [[models.deployments]]
  name = "failing"
  backend = "http"
  source = "{failing}"
  [[models.deployments]]
  name = "refused"
  backend = "http"
  source = "{refused}"

[[models]]
id = "solo"
fallbacks = ["dear"]
backend = "http"
source = "{failing}"

[[models]]
id = "gone"
fallbacks = ["down"]
  [[models.deployments]]
  name = "refused"
  backend = "http"
  source = "{refused}"
"""


@dataclass
class Charges:
    gateway: LiveServer
    healthy: FakeUpstream
    failing: FakeUpstream


@pytest.fixture(scope="module")
def charges(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Charges]:
    root = tmp_path_factory.mktemp("routing-charges")
    healthy, failing, dropping = ThreadedUpstream(), ThreadedUpstream(), ThreadedUpstream()
    failing.fake.script = ["500"]
    dropping.fake.script = ["drop"]  # two events of the answer, then the connection
    for upstream in (healthy, failing, dropping):
        upstream.start()
    models = root / "models.toml"
    models.write_text(
        MODELS.format(
            healthy=healthy.url,
            failing=failing.url,
            dropping=dropping.url,
            refused=f"http://127.0.0.1:{free_port()}",
            cheap_in=CHEAP[0],
            cheap_out=CHEAP[1],
            dear_in=DEAR[0],
            dear_out=DEAR[1],
            own_in=OWN_INPUT,
        )
    )
    try:
        with running_server(
            root,
            demo_model_dir,
            LLMSERVER_PROFILE="none",
            LLMSERVER_MODELS_FILE=str(models),
            LLMSERVER_CACHE_ENABLED="false",
            LLMSERVER_ROUTING_BACKOFF_S="0.01",
            # Circuits stay closed, so every request makes all its attempts.
            LLMSERVER_ROUTING_FAILURE_THRESHOLD="1000",
        ) as gateway:
            yield Charges(gateway, healthy.fake, failing.fake)
    finally:
        for upstream in (healthy, failing, dropping):
            upstream.stop()


def ask(gateway: LiveServer, key: str, model: str, *, stream: bool = False) -> httpx.Response:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": COMPLETION,
        "stream": stream,
    }
    return httpx.post(
        gateway.base_url + "/v1/chat/completions", headers=bearer(key), json=body, timeout=60
    )


def admin_get(gateway: LiveServer, path: str, **params: Any) -> Any:
    answer = httpx.get(
        gateway.base_url + path, headers=bearer(gateway.admin_key), params=params, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def logged(gateway: LiveServer, key_id: str, count: int) -> list[dict[str, Any]]:
    """The key's ``count`` log rows, oldest first (they are written behind)."""
    deadline = time.monotonic() + 10
    while True:
        rows: list[dict[str, Any]] = admin_get(gateway, "/admin/logs", key_id=key_id)["data"]
        if len(rows) >= count:
            return list(reversed(rows))
        assert time.monotonic() < deadline, rows
        time.sleep(0.1)


def budgeted_key(gateway: LiveServer, name: str) -> tuple[str, str]:
    created = asyncio.run(
        create_key(gateway.base_url, gateway.admin_key, name, budget_usd="1", budget_window="day")
    )
    return created["key"], created["details"]["id"]


def test_a_fallback_to_a_dearer_model_is_charged_its_prices_within_the_budget_hold(
    charges: Charges,
) -> None:
    gateway = charges.gateway
    key, key_id = budgeted_key(gateway, "fallback-charges")
    whole = ask(gateway, key, "cheap")
    assert whole.status_code == 200, whole.text
    streamed = ask(gateway, key, "cheap", stream=True)
    assert streamed.status_code == 200, streamed.text
    assert '"finish_reason"' in streamed.text

    rows = logged(gateway, key_id, 2)
    dear = cost(*DEAR)
    # Three attempts on its one deployment, then its fallback's one.
    assert [(r["model"], r["deployment"], r["attempts"]) for r in rows] == [
        ("cheap", "dear", 4),
        ("cheap", "dear", 4),
    ]
    assert [Decimal(r["cost_usd"]) for r in rows] == [dear, dear]
    [budget] = admin_get(gateway, "/admin/budgets", key_id=key_id)["data"]
    # Settling never passes the hold: had the hold been the cheap model's worst case, the
    # spend would have been cut to it and differ from the rows.
    assert Decimal(budget["spent_usd"]) == 2 * dear
    assert budget["reserved_usd"] == "0.00"
    [usage] = admin_get(gateway, "/admin/usage", key_id=key_id, group_by="key")["data"]
    assert Decimal(usage["cost_usd"]) == 2 * dear


def test_a_stream_a_dearer_fallback_cut_short_is_charged_its_prices(charges: Charges) -> None:
    gateway = charges.gateway
    key, key_id = budgeted_key(gateway, "cut-charges")
    streamed = ask(gateway, key, "cheap-cut", stream=True)
    assert streamed.status_code == 200  # the error comes in the stream, after its first byte
    assert "upstream_error" in streamed.text
    [row] = logged(gateway, key_id, 1)
    assert row["status"] == 502
    assert row["completion_tokens"] == 2  # what was sent before the cut
    # The prompt as admission counted it, and what was sent, at the fallback's prices.
    charged = (row["prompt_tokens"] * DEAR[0] + row["completion_tokens"] * DEAR[1]) / 10**6
    assert Decimal(row["cost_usd"]) == charged
    [budget] = admin_get(gateway, "/admin/budgets", key_id=key_id)["data"]
    assert (Decimal(budget["spent_usd"]), budget["reserved_usd"]) == (charged, "0.00")


def test_a_deployment_with_its_own_prices_charges_them(charges: Charges) -> None:
    gateway = charges.gateway
    key, key_id = budgeted_key(gateway, "deployment-charges")
    answer = ask(gateway, key, "split")
    assert answer.status_code == 200, answer.text
    [row] = logged(gateway, key_id, 1)
    assert (row["deployment"], row["attempts"]) == ("own-price", 2)
    # Its input price is its own, its output price the model's.
    own = cost(OWN_INPUT, CHEAP[1])
    assert Decimal(row["cost_usd"]) == own
    [budget] = admin_get(gateway, "/admin/budgets", key_id=key_id)["data"]
    assert (Decimal(budget["spent_usd"]), budget["reserved_usd"]) == (own, "0.00")


def test_a_request_no_deployment_answered_logs_the_last_tried_and_its_attempts(
    charges: Charges,
) -> None:
    gateway = charges.gateway
    key, key_id = budgeted_key(gateway, "failed-rows")
    before = len(charges.failing.seen)
    # Ordered over two deployments, three attempts: failing, refused, failing again.
    whole = ask(gateway, key, "down")
    assert whole.status_code == 502, whole.text
    assert len(charges.failing.seen) == before + 2
    # A stream fails the same way before its first byte: a proper error answer.
    streamed = ask(gateway, key, "down", stream=True)
    assert streamed.status_code == 502, streamed.text
    # Three attempts on its only deployment, then three on its fallback's.
    fell_back = ask(gateway, key, "gone")
    assert fell_back.status_code == 502, fell_back.text

    rows = logged(gateway, key_id, 3)
    assert [(r["model"], r["status"], r["deployment"], r["attempts"]) for r in rows] == [
        ("down", 502, "failing", 3),
        ("down", 502, "failing", 3),
        ("gone", 502, "down/failing", 6),
    ]
    assert [Decimal(r["cost_usd"]) for r in rows] == [0, 0, 0]
    [budget] = admin_get(gateway, "/admin/budgets", key_id=key_id)["data"]
    assert (budget["spent_usd"], budget["reserved_usd"]) == ("0.00", "0.00")


def test_a_model_served_from_one_place_falls_back_too(charges: Charges) -> None:
    """``fallbacks`` without ``[[models.deployments]]``: the model's own place is its one
    deployment (it loaded as a plain backend, and its fallbacks went unused)."""
    gateway = charges.gateway
    key, key_id = budgeted_key(gateway, "solo-fallback")
    answer = ask(gateway, key, "solo")
    assert answer.status_code == 200, answer.text
    [row] = logged(gateway, key_id, 1)
    # Three attempts where it is served, then its fallback's one.
    assert (row["model"], row["deployment"], row["attempts"]) == ("solo", "dear", 4)
    assert Decimal(row["cost_usd"]) == cost(*DEAR)
