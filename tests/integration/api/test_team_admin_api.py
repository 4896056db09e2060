"""Teams on a live single-process server with a priced model: the admin API creates,
shows and changes them (audited, each 4xx in the admin error shape), keys join them, and
a team's budget and RPM, shared by its keys, are never passed: the refusals name the team
(the openai SDK raises RateLimitError with the message). The listings of every team's, and
every key's, budget and quotas answer as the one-at-a-time routes do, in memory over SQLite
and in Redis over PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from integration.api.priced import INPUT, MODEL, OUTPUT, priced_server
from integration.reliability.replicakit import unused_redis_db
from livesupport import LiveServer, openai_client
from llmserver.domain.teams import TEAM_NAME_MAX_CHARS

pytestmark = pytest.mark.slow

BUDGET = Decimal("0.00005")  # a few requests' worth at max_tokens 12


@pytest.fixture(scope="module")
def priced(tmp_path_factory: pytest.TempPathFactory, demo_model_dir: Path) -> Iterator[LiveServer]:
    with priced_server(tmp_path_factory.mktemp("teams"), demo_model_dir) as server:
        yield server


@pytest.fixture(
    scope="module",
    params=[
        "single process on SQLite",
        pytest.param(
            "replicas on PostgreSQL and Redis", marks=[pytest.mark.postgres, pytest.mark.redis]
        ),
    ],
)
def deployment(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    demo_model_dir: Path,
    make_postgres_database: Callable[[], str],
) -> Iterator[LiveServer]:
    """A priced server per way the ledgers are kept: in the process's memory over the
    database, or in Redis (each lists its counters its own way)."""
    if request.param == "single process on SQLite":
        yield request.getfixturevalue("priced")
        return
    client, redis_url = unused_redis_db()
    try:
        with priced_server(
            tmp_path_factory.mktemp("replicas"),
            demo_model_dir,
            database_url=make_postgres_database(),
            LLMSERVER_DEPLOYMENT="replicas",
            LLMSERVER_REDIS_URL=redis_url,
        ) as server:
            yield server
    finally:
        client.flushdb()
        client.close()


def admin(server: LiveServer) -> httpx.Client:
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    return httpx.Client(base_url=server.base_url, headers=headers, timeout=30)


def created(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def members(server: LiveServer, team: str, count: int) -> list[openai.OpenAI]:
    """``count`` new keys in ``team``, as openai clients."""
    clients = []
    with admin(server) as http:
        for n in range(count):
            key = created(http.post("/admin/keys", json={"name": f"{team}-{n}", "team": team}))
            assert key["details"]["team_id"] is not None
            clients.append(openai_client(server, key["key"]))
    return clients


def ask(client: openai.OpenAI, turn: int) -> Decimal:
    """One request's cost, in dollars."""
    reply = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": f"count to {turn}"}],
        max_tokens=12,
        temperature=0.9,
    )
    assert reply.usage is not None
    usage = reply.usage
    return (usage.prompt_tokens * INPUT + usage.completion_tokens * OUTPUT) / 10**6


def test_a_team_budget_shared_by_three_keys_is_never_passed(priced: LiveServer) -> None:
    with admin(priced) as http:
        team = created(
            http.post("/admin/teams", json={"name": "shared", "budget_usd": str(BUDGET)})
        )
    assert (team["budget_usd"], team["budget_window"]) == ("0.00005", "month")
    clients = members(priced, "shared", 3)
    spent, served = Decimal(0), 0
    for turn in range(30):
        try:
            spent += ask(clients[turn % 3], turn)
            served += 1
        except openai.RateLimitError as exc:
            refused = exc
            break
    else:
        raise AssertionError("a $0.00005 team budget admitted 30 requests")
    assert 0 < spent <= BUDGET
    assert served >= 3  # every key spent some of it
    body = refused.body
    assert isinstance(body, dict)
    assert body["code"] == "budget_exceeded"
    assert "team 'shared'" in refused.message
    assert "resets at" in refused.message
    assert Decimal(refused.response.headers["x-budget-remaining-usd"]) == BUDGET - spent

    with admin(priced) as http:
        shown = http.get("/admin/teams/shared").json()
    assert Decimal(shown["budget"]["spent_usd"]) == spent
    assert shown["budget"]["reserved_usd"] == "0.00"
    assert shown["usage"]["requests"] == served


def test_a_team_rpm_shared_by_its_keys_refuses_naming_the_team(priced: LiveServer) -> None:
    with admin(priced) as http:
        created(http.post("/admin/teams", json={"name": "rpm team", "rpm_limit": 3}))
    first, second = members(priced, "rpm team", 2)
    for turn in range(3):
        ask((first, second)[turn % 2], turn)
    with pytest.raises(openai.RateLimitError, match="3 requests per minute for team 'rpm team'"):
        ask(second, 3)


def test_the_admin_api_creates_changes_and_audits_teams_and_refuses_bad_input(
    priced: LiveServer,
) -> None:
    with admin(priced) as http:
        team = created(
            http.post(
                "/admin/teams",
                json={
                    "name": "é" * 64,
                    "quota_tokens": 10**15,
                    "rpm_limit": 10**9,
                    "tpm_limit": 10**12,
                    "max_parallel": 10**6,
                    "budget_usd": "1000000",
                    "budget_window": "week",
                },
            )
        )
        assert http.get(f"/admin/teams/{team['id']}").json()["team"] == team
        changed = http.patch(f"/admin/teams/{team['id']}", json={"name": "ops", "tpm_limit": None})
        assert changed.status_code == 200, changed.text
        assert (changed.json()["name"], changed.json()["tpm_limit"]) == ("ops", None)
        assert "ops" in [t["name"] for t in http.get("/admin/teams").json()["data"]]
        trail = http.get("/admin/audit", params={"target": team["id"]}).json()["data"]
        assert [e["action"] for e in trail] == ["team.update", "team.create"]
        assert trail[0]["after"] == {"name": "ops", "tpm_limit": None}

        for bad, param in [
            ({"name": "ops"}, "name"),  # taken
            ({"name": "x" * 65}, "name"),
            ({"name": "y", "rpm_limit": 0}, "rpm_limit"),
            ({"name": "z", "budget_usd": "0.0000000001"}, "budget_usd"),
        ]:
            answer = http.post("/admin/teams", json=bad)
            assert answer.status_code == 400, answer.text
            assert param in answer.text
        assert http.get("/admin/teams/nope").status_code == 404
        assert http.patch("/admin/teams/nope", json={}).status_code == 404
        unknown = http.post("/admin/keys", json={"name": "k", "team": "nope"})
        assert unknown.status_code == 404
        assert unknown.json()["error"]["message"] == "No team with id or name 'nope'."
        key = created(http.post("/admin/keys", json={"name": "k", "team": "ops"}))["details"]
        left = http.patch(f"/admin/keys/{key['id']}", json={"team": None})
        assert left.json()["team_id"] is None
        entries = http.get("/admin/audit", params={"target": key["id"]}).json()["data"]
        assert entries[0]["after"] == {"team_id": None}


def test_usage_and_metrics_report_spend_by_team(priced: LiveServer) -> None:
    with admin(priced) as http:
        team = created(http.post("/admin/teams", json={"name": "usage team"}))
    spent = sum(ask(client, turn) for turn, client in enumerate(members(priced, "usage team", 2)))
    query = {"group_by": "team", "team": "usage team"}
    with admin(priced) as http:
        deadline = time.monotonic() + 10
        while True:  # request logs are written behind
            rows = http.get("/admin/usage", params=query).json()["data"]
            if rows and rows[0]["requests"] >= 2:
                break
            assert time.monotonic() < deadline, rows
            time.sleep(0.2)
        as_csv = http.get("/admin/usage", params={**query, "format": "csv"}).text
    assert [(r["team_id"], r["requests"], Decimal(r["cost_usd"])) for r in rows] == [
        (team["id"], 2, spent)
    ]
    header, line = as_csv.splitlines()
    assert header.startswith("team_id,requests,")
    assert line.startswith(f"{team['id']},2,")
    exported = httpx.get(priced.base_url + "/metrics", timeout=10).text
    assert 'llmserver_team_prompt_tokens_total{team="usage team"}' in exported
    assert 'llmserver_team_spend_microdollars_total{team="usage team"}' in exported


def test_the_team_list_with_usage_shows_each_team_as_its_own_route_does(
    deployment: LiveServer,
) -> None:
    teams: dict[str, dict[str, Any]] = {
        "listed a": {},
        "listed b": {"budget_usd": "1", "budget_window": "day"},
        "listed c": {"budget_usd": "2", "budget_window": "week"},
        "listed d": {"budget_usd": "3"},  # a month's, spent by no request
        # No key; the longest name a team may have, listed as stored (PostgreSQL too).
        "listed e" + "x" * (TEAM_NAME_MAX_CHARS - len("listed e")): {"quota_tokens": 1000},
    }
    with admin(deployment) as http:
        for name, settings in teams.items():
            created(http.post("/admin/teams", json={"name": name, **settings}))
    for team, count in (("listed a", 2), ("listed b", 1), ("listed c", 1), ("listed d", 1)):
        for turn, client in enumerate(members(deployment, team, count)):
            if team != "listed d":
                ask(client, turn)
    with admin(deployment) as http:
        answer = http.get("/admin/teams", params={"with_usage": "true"})
        assert answer.status_code == 200, answer.text
        listed = answer.json()
        shown = [http.get(f"/admin/teams/{d['team']['id']}").json() for d in listed["data"]]
        plain = http.get("/admin/teams").json()
        bad = http.get("/admin/teams", params={"with_usage": "maybe"})
    assert listed["object"] == "teams.with_usage"
    assert listed["data"] == shown
    assert [d["team"] for d in listed["data"]] == plain["data"]  # every team, by name
    by_name = {d["team"]["name"]: d for d in listed["data"]}
    assert set(teams) <= set(by_name)
    assert [by_name[n]["usage"]["requests"] for n in teams] == [2, 1, 1, 0, 0]
    budgets = [by_name[n]["budget"] for n in teams]
    assert [b and (b["window"], Decimal(b["spent_usd"]) > 0) for b in budgets] == [
        None,
        ("day", True),
        ("week", True),
        ("month", False),
        None,
    ]
    assert plain["object"] == "list"
    assert bad.status_code == 400
    assert "with_usage" in bad.text


def test_the_key_listings_show_each_key_as_its_own_query_does(deployment: LiveServer) -> None:
    """``GET /admin/budgets`` and ``GET /admin/model-quotas`` over every key (read in a
    listing per window) answer for each key what the same route asked for that key alone
    (one read) does."""
    settings: list[dict[str, Any]] = [
        {"budget_usd": "1", "budget_window": "day"},
        {"budget_usd": "2", "budget_window": "week"},
        {"budget_usd": "3", "model_limits": {MODEL: {"quota_tokens": 5000}}},
        {"model_limits": {MODEL: {"quota_tokens": 6000}}},  # never used
    ]
    with admin(deployment) as http:
        made = [
            created(http.post("/admin/keys", json={"name": f"listed key {n}", **extra}))
            for n, extra in enumerate(settings)
        ]
    for turn, key in enumerate(made[:3]):
        ask(openai_client(deployment, key["key"]), turn)
    ids = [key["details"]["id"] for key in made]
    with admin(deployment) as http:
        budgets = http.get("/admin/budgets").json()["data"]
        quotas = http.get("/admin/model-quotas").json()["data"]
        each_budget = [http.get("/admin/budgets", params={"key_id": i}).json() for i in ids]
        each_quota = [http.get("/admin/model-quotas", params={"key_id": i}).json() for i in ids]
    mine = [b for b in budgets if b["key_id"] in ids]
    assert mine == [b for shown in each_budget for b in shown["data"]]
    assert [(b["window"], Decimal(b["spent_usd"]) > 0) for b in mine] == [
        ("day", True),
        ("week", True),
        ("month", True),
    ]
    mine = [q for q in quotas if q["key_id"] in ids]
    assert mine == [q for shown in each_quota for q in shown["data"]]
    assert [q["used_tokens"] > 0 for q in mine] == [True, False]
