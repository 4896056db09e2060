"""Budgets and the usage report on a live server with a priced model: a key's budget is
never passed, its refusal is a 429 ``budget_exceeded`` with the remaining amount and the
reset time in each API's error shape (the openai and anthropic SDKs raise RateLimitError
with the message), the admin API shows and changes it, and ``GET /admin/usage`` and
``llmserver usage`` report the same exact sums, as JSON or CSV."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from integration.api.priced import INPUT, MODEL, OUTPUT, priced_server
from livesupport import REPO, LiveServer, closed_after_test

pytestmark = pytest.mark.slow

BUDGET = Decimal("0.00005")  # a few requests' worth at max_tokens 12


@pytest.fixture(scope="module")
def priced(tmp_path_factory: pytest.TempPathFactory, demo_model_dir: Path) -> Iterator[LiveServer]:
    with priced_server(tmp_path_factory.mktemp("budgets"), demo_model_dir) as server:
        yield server


def _admin(server: LiveServer) -> httpx.Client:
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    return httpx.Client(base_url=server.base_url, headers=headers, timeout=30)


def _budgeted_key(server: LiveServer, budget: str, window: str) -> dict[str, Any]:
    with _admin(server) as http:
        answer = http.post(
            "/admin/keys",
            json={"name": "budgeted", "budget_usd": budget, "budget_window": window},
        )
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def test_a_budget_is_never_passed_and_refuses_in_every_api_shape(priced: LiveServer) -> None:
    # A month's window: a day's would make this test fail when run across midnight.
    created = _budgeted_key(priced, str(BUDGET), "month")
    key, key_id = created["key"], created["details"]["id"]
    assert (created["details"]["budget_usd"], created["details"]["budget_window"]) == (
        "0.00005",
        "month",
    )
    client = closed_after_test(
        openai.OpenAI(base_url=priced.base_url + "/v1", api_key=key, max_retries=0)
    )
    spent = Decimal(0)
    for turn in range(20):
        try:
            reply = client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": f"count to {turn}"}],
                max_tokens=12,
                temperature=0.9,
            )
        except openai.RateLimitError as exc:
            refused = exc
            break
        assert reply.usage is not None
        spent += (
            reply.usage.prompt_tokens * INPUT + reply.usage.completion_tokens * OUTPUT
        ) / 10**6
    else:
        raise AssertionError("a $0.00005 budget admitted 20 requests")
    assert 0 < spent <= BUDGET
    body = refused.body
    assert isinstance(body, dict)
    assert body["code"] == "budget_exceeded"
    assert "Budget exceeded" in refused.message
    assert "resets at" in refused.message
    remaining = Decimal(refused.response.headers["x-budget-remaining-usd"])
    assert remaining == BUDGET - spent  # every cost here is a whole number of nanodollars
    today = datetime.now(UTC).date()
    reset = datetime.fromisoformat(refused.response.headers["x-budget-reset"])
    month = f"{today.year:04d}-{today.month:02d}"
    first = datetime(today.year, today.month, 1, tzinfo=UTC)
    assert reset == (first + timedelta(days=32)).replace(day=1)  # the next month's first

    # The other surfaces refuse in their own shapes.
    with pytest.raises(openai.RateLimitError, match="Budget exceeded"):
        client.responses.create(model=MODEL, input="hello", max_output_tokens=12)
    claude = closed_after_test(
        anthropic.Anthropic(base_url=priced.base_url, api_key=key, max_retries=0)
    )
    with pytest.raises(anthropic.RateLimitError, match="Budget exceeded") as refused_messages:
        claude.messages.create(
            model=MODEL, max_tokens=12, messages=[{"role": "user", "content": "hello"}]
        )
    assert refused_messages.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]

    with _admin(priced) as http:
        [status] = http.get("/admin/budgets", params={"key_id": key_id}).json()["data"]
        assert Decimal(status["spent_usd"]) == spent
        assert (status["reserved_usd"], status["period"]) == ("0.00", month)
        raised = http.patch(f"/admin/keys/{key_id}", json={"budget_usd": 1})
        assert raised.json()["budget_usd"] == "1.00"
    # The server reads keys through a cache (LLMSERVER_KEY_CACHE_TTL_S): wait for the raise.
    deadline = time.monotonic() + 30
    while True:
        try:
            client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "again"}], max_tokens=4
            )
            break
        except openai.RateLimitError:
            assert time.monotonic() < deadline, "a raised budget still refused"
            time.sleep(0.5)


def test_the_usage_report_sums_exactly_as_json_csv_and_on_the_command_line(
    priced: LiveServer,
) -> None:
    client = closed_after_test(
        openai.OpenAI(base_url=priced.base_url + "/v1", api_key=priced.user_key)
    )
    for content in ("one", "two", "one"):
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": content}],
            max_tokens=6,
            temperature=0,
        )
    key_id = priced.keys.ids["user"]
    today = str(datetime.now(UTC).date())
    with _admin(priced) as http:
        deadline = time.monotonic() + 10
        while True:  # request logs are written behind
            report = http.get("/admin/usage", params={"from": today, "to": today, "key_id": key_id})
            if report.json()["data"] and report.json()["data"][0]["requests"] >= 3:
                break
            assert time.monotonic() < deadline
            time.sleep(0.2)
        by_model = http.get(
            "/admin/usage", params={"group_by": "model", "model": MODEL, "key_id": key_id}
        ).json()
        as_csv = http.get("/admin/usage", params={"key_id": key_id}, headers={"Accept": "text/csv"})
        legacy = http.get("/admin/usage", params={"key_id": key_id}).json()
        bad = http.get("/admin/usage", params={"group_by": "org,day"})

    body = report.json()
    assert (body["from"], body["to"], body["group_by"]) == (today, today, ["key", "model", "day"])
    [row] = body["data"]
    assert (row["day"], row["key_id"], row["model"]) == (today, key_id, MODEL)
    assert (row["requests"], row["cache_hits"]) == (3, 1)
    assert row["total_tokens"] == row["prompt_tokens"] + row["completion_tokens"]
    cost = Decimal(row["cost_usd"])
    assert cost > 0
    [only_model] = by_model["data"]
    assert set(only_model) & {"day", "key_id"} == set()
    assert (only_model["model"], Decimal(only_model["cost_usd"])) == (MODEL, cost)
    assert as_csv.headers["content-type"].startswith("text/csv")
    [csv_row] = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert (csv_row["key_id"], csv_row["requests"], Decimal(csv_row["cost_usd"])) == (
        key_id,
        "3",
        cost,
    )
    # Without the report's parameters, the 0.2 answer: the key's monthly quota ledger.
    assert {"period", "used_tokens", "reserved_tokens"} <= set(legacy["data"][0])
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "group_by"

    command = [sys.executable, "-m", "llmserver.cli", "usage", "--key", key_id, "--group-by"]
    command += ["key,model", "--from", today, "--to", today]
    out = subprocess.run(command, env=priced.env, cwd=REPO, capture_output=True, check=True)
    [cli_row] = list(csv.DictReader(io.StringIO(out.stdout.decode())))
    assert (cli_row["model"], cli_row["requests"], Decimal(cli_row["cost_usd"])) == (
        MODEL,
        "3",
        cost,
    )
