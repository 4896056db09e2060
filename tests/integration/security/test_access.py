"""Who gets in where: every served route against every kind of caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from livesupport import LiveServer

pytestmark = pytest.mark.slow

MODEL = "demo-tiny-llama"
EXPECTED_AUTH_CODES = {
    "none": "missing_api_key",
    "malformed": "malformed_api_key",
    "unknown": "invalid_api_key",
    "revoked": "revoked_api_key",
    "bare": "invalid_authorization_header",
    "basic": "missing_api_key",
}
USERS = ("user", "playground", "basic+header", "bare+header")
"""Callers that get in with a key of a role other than admin."""
ADMINS = ("admin", "bearer+header")
CALLERS = (*EXPECTED_AUTH_CODES, *USERS, *ADMINS)
PUBLIC = dict.fromkeys(CALLERS, 200)
KEYED = dict.fromkeys(EXPECTED_AUTH_CODES, 401) | dict.fromkeys(USERS + ADMINS, 200)
ADMIN = KEYED | dict.fromkeys(USERS, 403)

CHAT_BODY = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
MESSAGES_BODY = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
ANTHROPIC_TYPES = {401: "authentication_error", 403: "permission_error"}
"""The Messages API's error types: its errors have Anthropic's shape, without our codes."""

# (method, path as served, path as in the route table, body, expected status per caller)
MATRIX: list[tuple[str, str, str, dict[str, Any] | None, dict[str, int]]] = [
    ("GET", "/healthz", "/healthz", None, PUBLIC),
    ("GET", "/readyz", "/readyz", None, PUBLIC),
    ("GET", "/metrics", "/metrics", None, PUBLIC),
    ("GET", "/openapi/openapi.json", "/openapi/openapi.json", None, PUBLIC),
    ("GET", "/ui/config.js", "/ui/config.js", None, PUBLIC),
    ("GET", "/v1/models", "/v1/models", None, KEYED),
    ("GET", f"/v1/models/{MODEL}", "/v1/models/{model_id}", None, KEYED),
    ("POST", "/v1/chat/completions", "/v1/chat/completions", CHAT_BODY, KEYED),
    (
        "POST",
        "/v1/completions",
        "/v1/completions",
        {"model": MODEL, "prompt": "hi", "max_tokens": 1},
        KEYED,
    ),
    ("POST", "/v1/embeddings", "/v1/embeddings", {"model": "demo-embed", "input": "hi"}, KEYED),
    ("POST", "/v1/messages", "/v1/messages", {**MESSAGES_BODY, "max_tokens": 1}, KEYED),
    ("POST", "/v1/messages/count_tokens", "/v1/messages/count_tokens", MESSAGES_BODY, KEYED),
    (
        "POST",
        "/v1/responses",
        "/v1/responses",
        {"model": MODEL, "input": "hi", "max_output_tokens": 1},
        KEYED,
    ),
    ("GET", "/admin/keys", "/admin/keys", None, ADMIN),
    ("POST", "/admin/keys", "/admin/keys", {"name": "matrix"}, ADMIN | dict.fromkeys(ADMINS, 201)),
    ("GET", "/admin/keys/{victim}", "/admin/keys/{key_id}", None, ADMIN),
    ("GET", "/admin/budgets", "/admin/budgets", None, ADMIN),
    ("GET", "/admin/model-quotas", "/admin/model-quotas", None, ADMIN),
    # The second admin caller's team would take the first's name: a 400 saying so.
    (
        "POST",
        "/admin/teams",
        "/admin/teams",
        {"name": "matrix-team"},
        ADMIN | {"admin": 201, "bearer+header": 400},
    ),
    ("GET", "/admin/teams", "/admin/teams", None, ADMIN),
    ("GET", "/admin/teams/matrix-team", "/admin/teams/{team}", None, ADMIN),
    ("PATCH", "/admin/teams/matrix-team", "/admin/teams/{team}", {"rpm_limit": 100}, ADMIN),
    ("GET", "/admin/usage", "/admin/usage", None, ADMIN),
    ("GET", "/admin/usage/daily", "/admin/usage/daily", None, ADMIN),
    ("GET", "/admin/logs", "/admin/logs", None, ADMIN),
    ("GET", "/admin/roles", "/admin/roles", None, ADMIN),
    ("PATCH", "/admin/keys/{victim}", "/admin/keys/{key_id}", {"rpm_limit": 100}, ADMIN),
    (
        "POST",
        "/admin/keys/{victim}/rotate",
        "/admin/keys/{key_id}/rotate",
        {"grace_period": "1h"},
        ADMIN | dict.fromkeys(ADMINS, 201),
    ),
    ("GET", "/admin/audit", "/admin/audit", None, ADMIN),
    ("GET", "/admin/models", "/admin/models", None, ADMIN),
    ("GET", "/admin/cache", "/admin/cache", None, ADMIN),
    ("POST", "/admin/cache/purge", "/admin/cache/purge", {"model": "no-such-model"}, ADMIN),
    # Last: the admin's revocation must find the key untouched by everyone before.
    ("DELETE", "/admin/keys/{victim}", "/admin/keys/{key_id}", None, ADMIN),
]


@pytest.fixture(scope="module")
def callers(live_server: LiveServer) -> dict[str, dict[str, str]]:
    keys = live_server.keys
    prefix = keys.user.split("_")[1]
    return {
        "none": {},
        "malformed": {"Authorization": "Bearer not-a-key"},
        "unknown": {"Authorization": f"Bearer llms_{prefix}_{'A' * 40}"},
        "revoked": {"Authorization": f"Bearer {keys.revoked}"},
        "user": {"Authorization": f"Bearer {keys.user}"},
        # The playground key goes in the other accepted header, so both are covered.
        "playground": {"X-API-Key": keys.playground},
        "admin": {"Authorization": f"Bearer {keys.admin}"},
        # Where the key is read from (app.auth): a bare key in Authorization is refused...
        "bare": {"Authorization": keys.user},
        # ...unless X-API-Key is sent, which is then used (not the bare admin key);
        "bare+header": {"Authorization": keys.admin, "X-API-Key": keys.user},
        # another scheme is a proxy's, not a key, so X-API-Key is read;
        "basic": {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="},
        "basic+header": {"Authorization": "Basic dXNlcjpwYXNzd29yZA==", "X-API-Key": keys.user},
        # and a Bearer key (scheme in any case) wins over X-API-Key.
        "bearer+header": {"Authorization": f"BEARER {keys.admin}", "X-API-Key": keys.user},
    }


@pytest.fixture(scope="module")
def http(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.base_url, timeout=60) as client:
        yield client


def test_matrix_covers_every_served_route(http: httpx.Client) -> None:
    documented = {
        (method.upper(), path)
        for path, operations in http.get("/openapi/openapi.json").json()["paths"].items()
        for method in operations
    }
    covered = {(method, route) for method, _, route, _, _ in MATRIX}
    assert documented <= covered, documented - covered


def test_route_by_role_matrix(
    http: httpx.Client,
    callers: dict[str, dict[str, str]],
    live_server: LiveServer,
) -> None:
    admin = {"Authorization": f"Bearer {live_server.admin_key}"}
    victim = http.post("/admin/keys", headers=admin, json={"name": "matrix-victim"})
    assert victim.status_code == 201
    victim_id = victim.json()["details"]["id"]
    got: dict[tuple[str, str], dict[str, int]] = {}
    wrong_codes: list[str] = []
    for method, path, _, body, _ in MATRIX:
        url = path.replace("{victim}", victim_id)
        row = got.setdefault((method, path), {})
        for caller in CALLERS:
            response = http.request(method, url, headers=callers[caller], json=body)
            row[caller] = response.status_code
            if response.status_code not in (401, 403):
                continue
            error = response.json()["error"]
            if response.json().get("type") == "error":  # Anthropic's shape
                assert error["type"] == ANTHROPIC_TYPES[response.status_code], response.text
            elif response.status_code == 403:
                assert error["code"] == "permission_denied"
            elif error["code"] != EXPECTED_AUTH_CODES.get(caller):
                wrong_codes.append(f"{method} {path} {caller}: {response.text}")
    expected = {(method, path): statuses for method, path, _, _, statuses in MATRIX}
    assert got == expected
    assert not wrong_codes


def test_errors_do_not_reveal_whether_a_key_exists(
    http: httpx.Client,
    live_server: LiveServer,
) -> None:
    """A known prefix with a wrong secret reads exactly like a key that does not exist."""
    prefix = live_server.keys.user.split("_")[1]
    known = http.get("/v1/models", headers={"Authorization": f"Bearer llms_{prefix}_{'B' * 40}"})
    unknown = http.get(
        "/v1/models", headers={"Authorization": f"Bearer llms_zzzzzzzzzzzz_{'B' * 40}"}
    )
    assert known.status_code == unknown.status_code == 401
    assert known.json() == unknown.json()


def test_a_bare_key_in_authorization_is_refused_with_how_to_send_it(
    http: httpx.Client,
    live_server: LiveServer,
) -> None:
    response = http.get("/v1/models", headers={"Authorization": live_server.user_key})
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "invalid_authorization_header"
    assert "'Authorization: Bearer <key>'" in error["message"]
    assert "'X-API-Key'" in error["message"]
