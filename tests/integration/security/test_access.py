"""Who gets in where: every served route against every kind of caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

MODEL = "demo-tiny-llama"
CALLERS = ("none", "malformed", "unknown", "revoked", "user", "playground", "admin")
PUBLIC = dict.fromkeys(CALLERS, 200)
KEYED = {"none": 401, "malformed": 401, "unknown": 401, "revoked": 401} | {
    "user": 200,
    "playground": 200,
    "admin": 200,
}
ADMIN = KEYED | {"user": 403, "playground": 403}
EXPECTED_AUTH_CODES = {
    "none": "missing_api_key",
    "malformed": "malformed_api_key",
    "unknown": "invalid_api_key",
    "revoked": "revoked_api_key",
}

CHAT_BODY = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}

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
    ("GET", "/admin/keys", "/admin/keys", None, ADMIN),
    ("POST", "/admin/keys", "/admin/keys", {"name": "matrix"}, ADMIN | {"admin": 201}),
    ("GET", "/admin/keys/{victim}", "/admin/keys/{key_id}", None, ADMIN),
    ("GET", "/admin/usage", "/admin/usage", None, ADMIN),
    ("GET", "/admin/logs", "/admin/logs", None, ADMIN),
    ("GET", "/admin/roles", "/admin/roles", None, ADMIN),
    # Last: the admin's revocation must find the key untouched by everyone before.
    ("DELETE", "/admin/keys/{victim}", "/admin/keys/{key_id}", None, ADMIN),
]


@pytest.fixture(scope="module")
def callers(live_server) -> dict[str, dict[str, str]]:  # type: ignore[no-untyped-def]
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
    }


@pytest.fixture(scope="module")
def http(live_server) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
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
    live_server,  # type: ignore[no-untyped-def]
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
            expected_code = EXPECTED_AUTH_CODES.get(caller)
            if response.status_code == 401 and response.json()["error"]["code"] != expected_code:
                wrong_codes.append(f"{method} {path} {caller}: {response.text}")
            if response.status_code == 403:
                assert response.json()["error"]["code"] == "permission_denied"
    expected = {(method, path): statuses for method, path, _, _, statuses in MATRIX}
    assert got == expected
    assert not wrong_codes


def test_errors_do_not_reveal_whether_a_key_exists(
    http: httpx.Client,
    live_server,  # type: ignore[no-untyped-def]
) -> None:
    """A known prefix with a wrong secret reads exactly like a key that does not exist."""
    prefix = live_server.keys.user.split("_")[1]
    known = http.get("/v1/models", headers={"Authorization": f"Bearer llms_{prefix}_{'B' * 40}"})
    unknown = http.get(
        "/v1/models", headers={"Authorization": f"Bearer llms_zzzzzzzzzzzz_{'B' * 40}"}
    )
    assert known.status_code == unknown.status_code == 401
    assert known.json() == unknown.json()
