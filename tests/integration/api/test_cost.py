"""What requests cost, on a live server with a priced model: each log row's cost is its
tokens at the model's prices, a cache hit costs nothing, and the day's usage, the command
line and the spend counter add up to the same exact sum."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI
from openai.types import CompletionUsage
from prometheus_client.parser import text_string_to_metric_families

from livesupport import REPO, LiveServer, running_server

pytestmark = pytest.mark.slow

MODEL = "priced-demo"
INPUT, OUTPUT = Decimal("0.15"), Decimal("0.6")  # dollars per million tokens


@pytest.fixture(scope="module")
def priced(tmp_path_factory: pytest.TempPathFactory, demo_model_dir: Path) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("priced")
    models = root / "models.toml"
    models.write_text(
        "[[models]]\n"
        f'id = "{MODEL}"\n'
        'backend = "torch"\n'
        f'source = "{demo_model_dir}"\n'
        'device = "cpu"\n'
        'dtype = "float32"\n'
        "context_length = 512\n"
        'input_price_per_mtok = "0.15"\n'  # a decimal string
        "output_price_per_mtok = 0.6\n"  # a TOML float, read as the 0.6 it says
    )
    with running_server(
        root, demo_model_dir, LLMSERVER_PROFILE="none", LLMSERVER_MODELS_FILE=str(models)
    ) as server:
        yield server


def _logged(http: httpx.Client, key_id: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:  # request logs are written behind, within LLMSERVER_LOG_FLUSH_MS
        rows: list[dict[str, Any]] = http.get("/admin/logs", params={"key_id": key_id}).json()[
            "data"
        ]
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def _spend(http: httpx.Client) -> float:
    for family in text_string_to_metric_families(http.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "llmserver_spend_microdollars_total" and sample.labels == {
                "model": MODEL
            }:
                return sample.value
    raise AssertionError("no spend counter for the priced model")


def test_costs_are_exact_on_each_row_in_usage_and_in_the_spend_counter(
    priced: LiveServer,
) -> None:
    client = OpenAI(base_url=priced.base_url + "/v1", api_key=priced.user_key, max_retries=0)

    def ask(content: str, temperature: float) -> CompletionUsage | None:
        reply = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": content}],
            max_tokens=12,
            temperature=temperature,
        )
        return reply.usage

    usages = [ask("the price of tea", 0), ask("the price of tea", 0), ask("and coffee?", 0.9)]
    headers = {"Authorization": f"Bearer {priced.admin_key}"}
    with httpx.Client(base_url=priced.base_url, headers=headers, timeout=30) as http:
        rows = list(reversed(_logged(http, priced.keys.ids["user"], len(usages))))
        today = datetime.now(UTC).date()
        daily = http.get(
            "/admin/usage/daily",
            params={"since": str(today), "until": str(today + timedelta(days=1)), "model": MODEL},
        ).json()["data"]
        spend = _spend(http)

    def cost(usage: CompletionUsage | None) -> Decimal:
        assert usage is not None
        return (usage.prompt_tokens * INPUT + usage.completion_tokens * OUTPUT) / 10**6

    assert [r["cache_status"] for r in rows] == ["MISS", "HIT", "BYPASS"]
    assert all(isinstance(r["cost_usd"], str) for r in rows)
    assert [Decimal(r["cost_usd"]) for r in rows] == [cost(usages[0]), 0, cost(usages[2])]
    assert Decimal(rows[0]["cost_usd"]) > 0
    total = cost(usages[0]) + cost(usages[2])
    [day] = daily
    assert (day["requests"], day["cache_hits"], Decimal(day["cost_usd"])) == (3, 1, total)
    assert spend == int(total * 10**6)  # whole micro-dollars

    command = [sys.executable, "-m", "llmserver.cli", "logs", "usage", "--model", MODEL]
    command += ["--since", str(today), "--until", str(today + timedelta(days=1))]
    out = subprocess.run(command, env=priced.env, cwd=REPO, capture_output=True, check=True)
    [line] = out.stdout.decode().splitlines()
    assert Decimal(json.loads(line)["cost_usd"]) == total
