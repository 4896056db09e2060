"""The admin API behind the console, against a live server: edits that take effect at once,
rotation, the audit trail (who, what, before/after, request id; nothing secret), key search,
log filters, models and the cache."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from livesupport import KEY_PATTERN, LiveServer
from llmserver.domain.registry import DEMO_MODEL_ID

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def http(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.base_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def admin(live_server: LiveServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {live_server.admin_key}"}


def _chat(http: httpx.Client, key: str, content: str = "hi") -> httpx.Response:
    return http.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={
            "model": DEMO_MODEL_ID,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": 2,
            "temperature": 0,
        },
    )


def _audit(http: httpx.Client, admin: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    response = http.get("/admin/audit", headers=admin, params=params)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["data"]
    return entries


def test_edit_rotate_revoke_and_the_audit_trail(
    http: httpx.Client, admin: dict[str, str], live_server: LiveServer
) -> None:
    created = http.post("/admin/keys", headers=admin, json={"name": "console-api", "rpm_limit": 50})
    assert created.status_code == 201
    secret, key = created.json()["key"], created.json()["details"]
    assert key["state"] == "active"
    assert _chat(http, secret).status_code == 200

    # A lower RPM applies from the next request.
    edited = http.patch(f"/admin/keys/{key['id']}", headers=admin, json={"rpm_limit": 1})
    assert edited.status_code == 200, edited.text
    assert edited.json()["rpm_limit"] == 1
    edit_request_id = edited.headers["x-request-id"]
    statuses = [_chat(http, secret, f"n{n}").status_code for n in range(2)]
    assert 429 in statuses

    rotated = http.post(
        f"/admin/keys/{key['id']}/rotate", headers=admin, json={"grace_period": "0"}
    )
    assert rotated.status_code == 201, rotated.text
    new_secret, new = rotated.json()["key"], rotated.json()["details"]
    assert rotated.json()["replaced"]["state"] == "revoked"
    assert (new["name"], new["rpm_limit"], new["role"]) == ("console-api", 1, "user")
    assert _chat(http, secret).status_code == 401
    assert _chat(http, new_secret).status_code in (200, 429)

    revoked = http.delete(f"/admin/keys/{new['id']}", headers=admin)
    assert revoked.json()["state"] == "revoked"
    assert _chat(http, new_secret).status_code == 401

    admin_id = live_server.keys.ids["admin"]
    admin_prefix = live_server.admin_key.split("_")[1]
    trail = _audit(http, admin, target=key["id"])
    assert [e["action"] for e in trail] == ["key.rotate", "key.update", "key.create"]
    assert {(e["actor_key_id"], e["actor_prefix"]) for e in trail} == {(admin_id, admin_prefix)}
    rotate, update, create = trail
    assert (update["before"], update["after"]) == ({"rpm_limit": 50}, {"rpm_limit": 1})
    assert update["request_id"] == edit_request_id
    assert create["after"]["name"] == "console-api"
    assert rotate["after"]["replaced_by"] == new["id"]
    assert [e["action"] for e in _audit(http, admin, target=new["id"])] == ["key.revoke"]
    assert _audit(http, admin, action="key.update", target=key["id"]) == [update]

    # Nothing secret anywhere in the trail: no key, no hash.
    everything = http.get("/admin/audit", headers=admin, params={"limit": 500}).content
    assert not KEY_PATTERN.search(everything)
    for plaintext in (secret, new_secret, live_server.admin_key):
        assert plaintext.encode() not in everything
        assert plaintext.split("_", 2)[2].encode() not in everything
    assert b"key_hash" not in everything


def test_an_unchanged_edit_records_nothing_and_bad_edits_are_refused(
    http: httpx.Client, admin: dict[str, str]
) -> None:
    key = http.post("/admin/keys", headers=admin, json={"name": "quiet"}).json()["details"]
    same = http.patch(f"/admin/keys/{key['id']}", headers=admin, json={"name": "quiet"})
    assert same.status_code == 200
    assert [e["action"] for e in _audit(http, admin, target=key["id"])] == ["key.create"]
    for body, param in (
        ({"rpm_limit": 0}, "rpm_limit"),
        ({"expires_at": "2020-01-01T00:00:00"}, "expires_at"),
        ({"role": "admin"}, None),
        ({"allowed_models": ["nope"]}, "allowed_models"),
    ):
        refused = http.patch(f"/admin/keys/{key['id']}", headers=admin, json=body)
        assert refused.status_code == 400, (body, refused.text)
        if param:
            assert refused.json()["error"]["param"] == param
    bad_grace = http.post(
        f"/admin/keys/{key['id']}/rotate", headers=admin, json={"grace_period": "99d"}
    )
    assert bad_grace.status_code == 400
    assert bad_grace.json()["error"]["param"] == "grace_period"
    assert http.patch("/admin/keys/nope", headers=admin, json={}).status_code == 404


def test_tpm_and_max_parallel_are_set_and_cleared_by_an_edit(
    http: httpx.Client, admin: dict[str, str]
) -> None:
    created = http.post("/admin/keys", headers=admin, json={"name": "tpm", "rpm_limit": 1000})
    secret, key = created.json()["key"], created.json()["details"]
    assert (key["tpm_limit"], key["max_parallel"]) == (None, None)
    assert "x-ratelimit-limit-tokens" not in _chat(http, secret).headers

    edited = http.patch(
        f"/admin/keys/{key['id']}", headers=admin, json={"tpm_limit": 5000, "max_parallel": 2}
    )

    assert (edited.json()["tpm_limit"], edited.json()["max_parallel"]) == (5000, 2)
    answer = _chat(http, secret, "tpm")
    assert answer.headers["x-ratelimit-limit-tokens"] == "5000"
    assert int(answer.headers["x-ratelimit-remaining-tokens"]) < 5000
    # A reservation larger than the whole limit can never be admitted: a 400, not a 429.
    http.patch(f"/admin/keys/{key['id']}", headers=admin, json={"tpm_limit": 1})
    too_large = _chat(http, secret, "tpm 1")
    assert too_large.status_code == 400
    assert too_large.json()["error"]["code"] == "tokens_exceed_rate_limit"
    cleared = http.patch(f"/admin/keys/{key['id']}", headers=admin, json={"tpm_limit": None})
    assert (cleared.json()["tpm_limit"], cleared.json()["max_parallel"]) == (None, 2)
    assert "x-ratelimit-limit-tokens" not in _chat(http, secret, "no tpm").headers
    refused = http.patch(f"/admin/keys/{key['id']}", headers=admin, json={"max_parallel": 0})
    assert refused.status_code == 400
    assert "max_parallel" in refused.text


def test_key_list_filters(http: httpx.Client, admin: dict[str, str]) -> None:
    key = http.post("/admin/keys", headers=admin, json={"name": "Findable Zebra"}).json()
    found = http.get("/admin/keys", headers=admin, params={"q": "zebra", "state": "active"})
    assert [k["id"] for k in found.json()["data"]] == [key["details"]["id"]]
    http.delete(f"/admin/keys/{key['details']['id']}", headers=admin)
    active = http.get("/admin/keys", headers=admin, params={"q": "zebra", "state": "active"})
    assert active.json()["data"] == []
    admins = http.get("/admin/keys", headers=admin, params={"role": "admin"}).json()["data"]
    assert admins
    assert {k["role"] for k in admins} == {"admin"}
    assert http.get("/admin/keys", headers=admin, params={"state": "gone"}).status_code == 400


def test_models_show_backend_health_and_queue(http: httpx.Client, admin: dict[str, str]) -> None:
    models = http.get("/admin/models", headers=admin).json()["data"]
    demo = next(m for m in models if m["id"] == DEMO_MODEL_ID)
    assert demo["ready"] is True
    assert demo["backend"] == "torch"
    assert demo["queue_depth"] == 0
    assert demo["error"] is None
    # What the weights run as: the demo profile asks for plain float32.
    assert (demo["details"]["dtype"], demo["details"]["quantize"]) == ("float32", "none")


def test_cache_stats_purge_and_log_filters(
    http: httpx.Client, admin: dict[str, str], live_server: LiveServer
) -> None:
    prompt = f"cache me {time.time_ns()}"
    first = _chat(http, live_server.user_key, prompt)
    second = _chat(http, live_server.user_key, prompt)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    stats = http.get("/admin/cache", headers=admin).json()
    demo = next(m for m in stats["models"] if m["model"] == DEMO_MODEL_ID)
    assert demo["entries"] >= 1
    assert stats["entries"] >= demo["entries"]

    purged = http.post("/admin/cache/purge", headers=admin, json={"model": DEMO_MODEL_ID})
    assert purged.status_code == 200
    assert purged.json()["removed"] >= 1
    assert _chat(http, live_server.user_key, prompt).headers["x-cache"] == "MISS"
    entry = _audit(http, admin, action="cache.purge", target=DEMO_MODEL_ID)[0]
    assert entry["after"] == {"model": DEMO_MODEL_ID, "removed": purged.json()["removed"]}

    # The hit is found by its request id and by its cache status.
    request_id = second.headers["x-request-id"]
    deadline = time.monotonic() + 10
    while True:  # request logs are written behind, within LLMSERVER_LOG_FLUSH_MS
        rows = http.get("/admin/logs", headers=admin, params={"request_id": request_id}).json()
        if rows["data"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [r["cache_status"] for r in rows["data"]] == ["HIT"]
    hits = http.get("/admin/logs", headers=admin, params={"cache_status": "HIT", "limit": 500})
    assert request_id in {r["request_id"] for r in hits.json()["data"]}
