"""Hostile or careless input to the admin API and the playground routes, against a live
server: a 4xx that names what was wrong (or a documented reading), never a 500."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from livesupport import LiveServer, running_server

pytestmark = pytest.mark.slow

ERROR_FIELDS = {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def admin(live_server: LiveServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {live_server.admin_key}"}
    with httpx.Client(base_url=live_server.base_url, timeout=60, headers=headers) as http:
        yield http


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == ERROR_FIELDS
    return error


@pytest.mark.parametrize("expires_in", ["3000000d", "36501d", "9" * 5000 + "s"])
def test_a_lifetime_past_the_maximum_is_a_400_naming_expires_in(
    admin: httpx.Client, expires_in: str
) -> None:
    """3000000d was an OverflowError: a 500."""
    error = _error(admin.post("/admin/keys", json={"name": "x", "expires_in": expires_in}), 400)

    assert (error["param"], error["code"]) == ("expires_in", "invalid_request")
    assert "36500d" in error["message"]


def _logged_row(admin: httpx.Client, live_server: LiveServer) -> dict[str, Any]:
    """The request-log row of one completion by a fresh key (alone under its key id)."""
    created = admin.post("/admin/keys", json={"name": "logged"}).json()
    body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    headers = {"Authorization": f"Bearer {created['key']}"}
    answer = httpx.post(
        live_server.base_url + "/v1/chat/completions", json=body, headers=headers, timeout=60
    )
    assert answer.status_code == 200, answer.text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = admin.get("/admin/logs", params={"key_id": created["details"]["id"]}).json()
        if rows["data"]:
            return rows["data"][0]  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError("the completion was never logged")


def test_a_time_without_offset_is_read_as_utc(admin: httpx.Client, live_server: LiveServer) -> None:
    """A naive ``since`` was a 500 (the store refuses naive datetimes)."""
    row = _logged_row(admin, live_server)
    at = datetime.fromisoformat(row["created_at"])
    naive = at.replace(tzinfo=None)

    def total(**params: str) -> int:
        response = admin.get("/admin/logs", params={"key_id": row["key_id"], **params})
        assert response.status_code == 200, response.text
        return int(response.json()["total"])

    assert total(since=naive.isoformat()) == 1
    assert total(since=(naive + timedelta(seconds=1)).isoformat()) == 0
    assert total(until=(naive + timedelta(seconds=1)).isoformat()) == 1
    assert total(until=naive.isoformat()) == 0


@pytest.mark.parametrize(
    ("param", "value"),
    [("since", "9999-12-31T23:59:59-23:00"), ("until", "0001-01-01T00:00:00+01:00")],
)
def test_a_time_outside_the_utc_calendar_is_a_400(
    admin: httpx.Client, param: str, value: str
) -> None:
    error = _error(admin.get("/admin/logs", params={param: value}), 400)

    assert (error["param"], error["code"]) == (param, "invalid_request")


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/admin/logs", {"limit": "0"}, "limit"),
        ("/admin/logs", {"status": "abc"}, "status"),
        ("/admin/logs", {"since": "yesterday"}, "since"),
        ("/admin/usage", {"period": "2026-13"}, "period"),
        ("/admin/usage/daily", {"since": "2026-02-30"}, "since"),
    ],
)
def test_query_parameter_errors_name_the_parameter(
    admin: httpx.Client, path: str, params: dict[str, str], param: str
) -> None:
    """They said "Validation failed for GET ..." with param and code null."""
    error = _error(admin.get(path, params=params), 400)

    assert (error["param"], error["code"], error["type"]) == (
        param,
        "invalid_request",
        "invalid_request_error",
    )
    assert f"parameter '{param}'" in error["message"]


@pytest.mark.parametrize(
    ("until", "said"),
    [("2026-03-01", "must be after since (2026-03-01)"), ("2027-03-03", "spans 367 days")],
)
def test_a_daily_usage_window_backwards_or_too_long_is_a_400(
    admin: httpx.Client, until: str, said: str
) -> None:
    params = {"since": "2026-03-01", "until": until}
    error = _error(admin.get("/admin/usage/daily", params=params), 400)

    assert (error["param"], error["code"]) == ("until", "invalid_request")
    assert said in error["message"]


def test_daily_usage_reports_a_logged_completion(
    admin: httpx.Client, live_server: LiveServer
) -> None:
    row = _logged_row(admin, live_server)
    day = row["created_at"][:10]

    response = admin.get("/admin/usage/daily", params={"since": day, "key_id": row["key_id"]})
    # By default: from the first of this month to today.
    default = admin.get("/admin/usage/daily", params={"key_id": row["key_id"]})

    assert response.status_code == default.status_code == 200, response.text
    assert response.json() == default.json()
    assert response.json()["data"] == [
        {
            "day": day,
            "key_id": row["key_id"],
            "model": row["model"],
            "requests": 1,
            "prompt_tokens": row["prompt_tokens"],
            "completion_tokens": row["completion_tokens"],
            "cache_hits": 0,
            "errors": 0,
            "cost_usd": "0.00",  # the demo model has no prices
        }
    ]


def test_a_key_for_an_alias_may_use_the_model(admin: httpx.Client, live_server: LiveServer) -> None:
    """A key created for ``demo`` was refused ``demo``: requests are checked by model id."""
    created = admin.post("/admin/keys", json={"name": "alias", "allowed_models": ["demo"]})
    assert created.status_code == 201, created.text
    body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    headers = {"Authorization": f"Bearer {created.json()['key']}"}

    answer = httpx.post(
        live_server.base_url + "/v1/chat/completions", json=body, headers=headers, timeout=60
    )

    assert answer.status_code == 200, answer.text
    assert created.json()["details"]["allowed_models"] == ["demo-tiny-llama"]


def test_unknown_models_are_refused_unless_allowed(admin: httpx.Client) -> None:
    body: dict[str, Any] = {"name": "unknown", "allowed_models": ["demo", "no-such-model"]}

    refused = _error(admin.post("/admin/keys", json=body), 400)
    allowed = admin.post("/admin/keys", json=body | {"allow_unknown_models": True})

    assert (refused["param"], refused["code"]) == ("allowed_models", "model_not_found")
    assert "'no-such-model'" in refused["message"]
    assert allowed.status_code == 201, allowed.text
    assert allowed.json()["details"]["allowed_models"] == ["demo-tiny-llama", "no-such-model"]


@pytest.mark.parametrize(
    "path", ["/ui/%00", "/ui/assets/..%00/x", "/ui/" + "n" * 300, "/ui/%2e%2e%2f%2e%2e%2fetc"]
)
def test_unservable_playground_paths_are_404_without_a_key(
    live_server: LiveServer, path: str
) -> None:
    """A NUL byte in a /ui path was an unauthenticated 500."""
    error = _error(httpx.get(live_server.base_url + path, timeout=30), 404)

    assert error["code"] == "not_found"


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/metrics", "text/plain; version=0.0.4; charset=utf-8"),
        ("/ui/config.js", "text/javascript; charset=utf-8"),
    ],
)
def test_text_answers_name_their_charset_once(
    live_server: LiveServer, path: str, content_type: str
) -> None:
    response = httpx.get(live_server.base_url + path, timeout=30)

    assert response.status_code == 200
    assert response.headers.get_list("content-type") == [content_type]


@pytest.fixture(scope="module")
def postgres_admin(
    make_postgres_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    """An admin client of a server on PostgreSQL (no models: only the admin API is used)."""
    root = tmp_path_factory.mktemp("postgres-admin")
    url = make_postgres_database()
    with running_server(
        root, root / "no-demo-model", database_url=url, LLMSERVER_PROFILE="none"
    ) as server:
        headers = {"Authorization": f"Bearer {server.admin_key}"}
        with httpx.Client(base_url=server.base_url, timeout=60, headers=headers) as http:
            yield http


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("method", "path", "body", "param"),
    [
        ("GET", "/admin/keys/%00", None, "key_id"),
        ("DELETE", "/admin/keys/a%00b", None, "key_id"),
        ("GET", "/admin/logs?key_id=%00", None, "key_id"),
        ("GET", "/admin/logs?model=m%00", None, "model"),
        ("GET", "/admin/usage?key_id=%00", None, "key_id"),
        ("GET", "/admin/usage/daily?since=2026-01-01&model=m%00", None, "model"),
        ("POST", "/admin/keys", {"name": "a\u0000b"}, "name"),
        (
            "POST",
            "/admin/keys",
            {"name": "n", "allowed_models": ["m\u0000"], "allow_unknown_models": True},
            "allowed_models",
        ),
    ],
)
def test_a_nul_character_is_a_400_on_postgresql(
    postgres_admin: httpx.Client, method: str, path: str, body: Any, param: str
) -> None:
    """PostgreSQL text cannot hold U+0000: the driver failed each of these (a 500)."""
    error = _error(postgres_admin.request(method, path, json=body), 400)

    assert (error["param"], error["code"]) == (param, "invalid_request")
