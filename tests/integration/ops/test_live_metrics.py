"""/metrics of a live server after real traffic: the dashboards' metrics are really exported,
the histograms move, and series stay bounded whatever the requests carry."""

from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from integration.ops.opstools import (
    PROMETHEUS_SYNTHETIC,
    exported_metric_names,
    metric_names_in_dashboards,
)
from livesupport import LiveServer

pytestmark = pytest.mark.slow

CHAT = "/v1/chat/completions"


def scrape(live_server: LiveServer) -> str:
    response = httpx.get(
        f"{live_server.base_url}/metrics",
        headers={"Authorization": f"Bearer {live_server.admin_key}"},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def values(exposition: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }


def total(exposition: str, name: str) -> float:
    return sum(v for (n, _), v in values(exposition).items() if n == name)


def own_series(exposition: str) -> set[tuple[str, frozenset[tuple[str, str]]]]:
    return {key for key in values(exposition) if key[0].startswith("llmserver_")}


async def chat_many(
    live_server: LiveServer, n: int, *, stream: bool = False, cache: bool = True
) -> list[int]:
    """``n`` small chat requests, each with a different ``user``, 16 at a time."""
    limit = asyncio.Semaphore(16)
    headers = {"Authorization": f"Bearer {live_server.admin_key}"}
    if not cache:
        headers["Cache-Control"] = "no-cache"

    async def one(client: httpx.AsyncClient) -> int:
        body = {
            "model": "demo-tiny-llama",
            "messages": [{"role": "user", "content": "Count to three."}],
            "max_tokens": 2,
            "temperature": 0,
            "stream": stream,
            "user": secrets.token_hex(8),
        }
        async with limit:
            response = await client.post(CHAT, json=body, headers=headers)
            return response.status_code

    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=120) as client:
        return await asyncio.gather(*(one(client) for _ in range(n)))


def test_dashboards_only_chart_metrics_a_live_server_exports(live_server: LiveServer) -> None:
    asyncio.run(chat_many(live_server, 2))
    asyncio.run(chat_many(live_server, 1, stream=True))
    exported = exported_metric_names(scrape(live_server))
    unknown = metric_names_in_dashboards() - exported - PROMETHEUS_SYNTHETIC
    assert not unknown, f"dashboards query metrics the server does not export: {sorted(unknown)}"


def test_histograms_and_counters_move_with_traffic(live_server: LiveServer) -> None:
    before = scrape(live_server)
    statuses = asyncio.run(chat_many(live_server, 3)) + asyncio.run(
        chat_many(live_server, 2, stream=True, cache=False)
    )
    assert statuses == [200] * 5
    httpx.post(f"{live_server.base_url}{CHAT}", json={}, headers={"Authorization": "Bearer no"})
    after = scrape(live_server)

    def moved(name: str) -> float:
        return total(after, name) - total(before, name)

    assert moved("llmserver_http_request_duration_seconds_count") >= 6
    assert moved("llmserver_prompt_tokens_total") > 0
    assert moved("llmserver_cache_lookups_total") > 0
    # The two uncached streams ran the model.
    assert moved("llmserver_time_to_first_token_seconds_count") >= 2
    assert moved("llmserver_generation_duration_seconds_count") >= 2
    assert moved("llmserver_completion_tokens_total") >= 2
    counts = {
        labels: v
        for (name, labels), v in values(after).items()
        if name == "llmserver_http_request_duration_seconds_count"
    }
    assert any(("status_class", "4xx") in labels for labels in counts)


def test_series_stay_bounded_under_a_thousand_requests_with_random_users(
    live_server: LiveServer,
) -> None:
    asyncio.run(chat_many(live_server, 20))
    asyncio.run(chat_many(live_server, 5, stream=True))
    warmed = own_series(scrape(live_server))
    statuses = asyncio.run(chat_many(live_server, 1000))
    assert set(statuses) == {200}
    grown = own_series(scrape(live_server)) - warmed
    assert not grown, sorted(grown)
