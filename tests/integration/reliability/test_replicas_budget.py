"""A budget shared by concurrent requests on three replicas (PostgreSQL + Redis) is never
passed, by even one nanodollar, and what the servers counted is what the answers cost."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from integration.reliability.faultkit import bearer, chat_body, create_key
from integration.reliability.replicakit import Replicas, fire, running_replicas

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

MODEL = "dear-demo"
PRICE = Decimal(100)  # dollars per million tokens, input and output: $0.0001 a token
BUDGET = Decimal("0.01")
HAMMER, CONCURRENCY, MAX_TOKENS = 60, 60, 8


@pytest.fixture(scope="module")
def priced_replicas(
    postgres_url: str, demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    root = tmp_path_factory.mktemp("budget-replicas")
    models = root / "models.toml"
    models.write_text(
        f'[[models]]\nid = "{MODEL}"\nbackend = "torch"\nsource = "{demo_model_dir}"\n'
        'device = "cpu"\ndtype = "float32"\ncontext_length = 512\n'
        f'input_price_per_mtok = "{PRICE}"\noutput_price_per_mtok = "{PRICE}"\n'
    )
    extra = {"LLMSERVER_PROFILE": "none", "LLMSERVER_MODELS_FILE": str(models)}
    with running_replicas(postgres_url, demo_model_dir, root, **extra) as replicas:
        yield replicas


async def test_a_shared_budget_is_never_passed_across_replicas(priced_replicas: Replicas) -> None:
    urls = priced_replicas.urls
    created = await create_key(
        urls[0], priced_replicas.admin_key, "budget", budget_usd=str(BUDGET), budget_window="day"
    )
    body = {**chat_body("Count the sheep.", max_tokens=MAX_TOKENS, cache=False), "model": MODEL}
    tally = await fire(
        priced_replicas, created["key"], [dict(body) for _ in range(HAMMER)], CONCURRENCY
    )
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.get(
            urls[2] + "/admin/budgets",
            headers=bearer(priced_replicas.admin_key),
            params={"key_id": created["details"]["id"]},
        )
    [status] = answer.json()["data"]
    spent = Decimal(tally.usage_tokens) * PRICE / 10**6
    print(
        f"\nbudget ${BUDGET} on 3 replicas: {HAMMER} requests -> {tally.count(200)} x 200, "
        f"{tally.count(429)} x 429, spent ${spent}, counted ${status['spent_usd']}"
    )
    assert set(tally.statuses) == {200, 429}
    assert spent <= BUDGET
    # At $0.0001 a token every cost is whole nanodollars: the ledger is the answers' sum.
    assert Decimal(status["spent_usd"]) == spent
    assert status["reserved_usd"] == "0.00"
    assert Decimal(status["remaining_usd"]) == BUDGET - spent
    # Each admitted request held its worst case, so at least this many got in.
    worst = (tally.usage_tokens // max(1, tally.count(200)) + MAX_TOKENS) * PRICE / 10**6
    assert tally.count(200) >= int(BUDGET / worst) - 1
