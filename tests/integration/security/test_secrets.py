"""Key hygiene: secrets stored only as keyed hashes and never echoed in logs, metrics or
error bodies; CORS limited to the configured origins; the UI key never opens admin routes."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from livesupport import (
    TEST_SECRET,
    IssuedKeys,
    LiveServer,
    free_port,
    issue_keys,
    migrate,
    server_env,
    spawn_server,
    start_server,
    stop_server,
)
from llmserver.domain.keys import KeyHasher

pytestmark = pytest.mark.slow

MODEL = "demo-tiny-llama"
ALLOWED = "http://allowed.test"


def _secret_part(key: str) -> str:
    # llms_<prefix>_<secret>: the prefix has no "_", the secret may (URL-safe base64).
    return key.split("_", 2)[2]


@pytest.fixture(scope="module")
def exercised(live_server: LiveServer) -> tuple[list[str], list[str]]:
    """Use every key, good and bad, in every header; returns (secrets, error bodies)."""
    keys = live_server.keys
    admin = {"Authorization": f"Bearer {keys.admin}"}
    secrets = [keys.admin, keys.user, keys.playground, keys.revoked]
    bodies: list[str] = []
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    with httpx.Client(base_url=live_server.base_url, timeout=60) as http:
        created = http.post("/admin/keys", headers=admin, json={"name": "leak-check"})
        fresh = created.json()["key"]
        secrets.append(fresh)
        secret = _secret_part(fresh)
        wrong = fresh.removesuffix(secret) + "C" * len(secret)
        secrets.append(wrong)
        for key in [*secrets, "llms_short", "Bearer " + fresh, fresh + "x"]:
            for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
                for method, path, body in (
                    ("POST", "/v1/chat/completions", chat),
                    ("POST", "/v1/chat/completions", chat | {"model": "nope"}),
                    ("GET", "/v1/models", None),
                    ("GET", "/admin/keys", None),
                    ("GET", "/metrics", None),
                ):
                    response = http.request(method, path, headers=headers, json=body)
                    if response.status_code >= 400:
                        bodies.append(response.text)
        http.delete(f"/admin/keys/{created.json()['details']['id']}", headers=admin)
    return secrets, bodies


def test_keys_are_stored_only_as_keyed_hashes(
    exercised: tuple[list[str], list[str]],
    live_server: LiveServer,
) -> None:
    import sqlite3

    secrets, _ = exercised
    path = Path(live_server.database_url.split(":///", 1)[1])
    stored = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    for key in secrets:
        assert key.encode() not in stored
        assert _secret_part(key).encode() not in stored
    hasher = KeyHasher(TEST_SECRET)
    with sqlite3.connect(path) as conn:
        rows = dict(conn.execute("SELECT id, key_hash FROM api_keys").fetchall())
    for name in ("admin", "user", "playground", "revoked"):
        plaintext = getattr(live_server.keys, name)
        stored_hash = rows[live_server.keys.ids[name]]
        assert stored_hash == hasher.hash(plaintext)
        # Keyed: without the server secret the hash cannot be recomputed from the key.
        assert stored_hash != hashlib.sha256(plaintext.encode()).hexdigest()
        assert stored_hash != KeyHasher("some-other-secret-" + "y" * 30).hash(plaintext)


def test_key_comparison_is_constant_time() -> None:
    assert "hmac.compare_digest" in inspect.getsource(KeyHasher.verify)


def test_no_secret_in_logs_metrics_or_error_bodies(
    exercised: tuple[list[str], list[str]],
    live_server: LiveServer,
) -> None:
    secrets, bodies = exercised
    metrics = httpx.get(live_server.base_url + "/metrics", timeout=30).text
    logs = live_server.logs()
    assert bodies
    for key in secrets:
        for needle in (key, _secret_part(key)):
            assert needle not in logs
            assert needle not in metrics
            assert all(needle not in body for body in bodies)
    for text in (logs, metrics, *bodies):
        assert TEST_SECRET not in text


@dataclass
class GuardedServer:
    url: str
    keys: IssuedKeys
    root: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def guarded_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GuardedServer]:
    """A server with CORS for one origin and the playground key as its UI key."""
    root = tmp_path_factory.mktemp("guarded")
    database_url = f"sqlite+aiosqlite:///{root / 'llmserver.db'}"
    env = server_env(database_url, root / "no-demo-model", LLMSERVER_PROFILE="none")
    migrate(database_url)
    keys = asyncio.run(issue_keys(database_url, TEST_SECRET))
    env |= {"LLMSERVER_CORS_ORIGINS": ALLOWED, "LLMSERVER_UI_KEY": keys.playground}
    port = free_port()
    process = start_server(env, root / "server.log", port)
    yield GuardedServer(f"http://127.0.0.1:{port}", keys, root, env)
    stop_server(process)


def _preflight(url: str, origin: str) -> httpx.Response:
    return httpx.options(
        url + "/v1/chat/completions",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
        timeout=30,
    )


def test_cors_preflight_only_for_the_configured_origin(guarded_server: GuardedServer) -> None:
    allowed = _preflight(guarded_server.url, ALLOWED)
    assert allowed.status_code in (200, 204)
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    other = _preflight(guarded_server.url, "http://evil.test")
    assert other.status_code >= 400
    assert "access-control-allow-origin" not in other.headers


def test_cors_headers_only_for_the_configured_origin(guarded_server: GuardedServer) -> None:
    headers = {"Authorization": f"Bearer {guarded_server.keys.user}"}
    allowed = httpx.get(
        guarded_server.url + "/v1/models", headers=headers | {"Origin": ALLOWED}, timeout=30
    )
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    assert "x-request-id" in allowed.headers["access-control-expose-headers"]
    other = httpx.get(
        guarded_server.url + "/v1/models",
        headers=headers | {"Origin": "http://evil.test"},
        timeout=30,
    )
    assert "access-control-allow-origin" not in other.headers


def test_cors_headers_on_completion_answers_too(guarded_server: GuardedServer) -> None:
    # The completion routes' fast lane stands aside when CORS is on, so these answers
    # (here a 404: this server has no model) pass through Litestar's CORS middleware.
    response = httpx.post(
        guarded_server.url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {guarded_server.keys.user}", "Origin": ALLOWED},
        json={"model": "absent", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    assert response.headers["access-control-allow-origin"] == ALLOWED


def test_no_cors_without_configured_origins(live_server: LiveServer) -> None:
    response = _preflight(live_server.base_url, ALLOWED)
    assert "access-control-allow-origin" not in response.headers


def test_ui_key_cannot_reach_admin_routes(guarded_server: GuardedServer) -> None:
    ui_key = guarded_server.keys.playground
    config = httpx.get(guarded_server.url + "/ui/config.js", timeout=30).text
    assert ui_key in config  # the playground's key is public by design...
    for path in ("/admin/keys", "/admin/usage", "/admin/logs", "/admin/roles"):
        for headers in ({"Authorization": f"Bearer {ui_key}"}, {"X-API-Key": ui_key}):
            response = httpx.get(guarded_server.url + path, headers=headers, timeout=30)
            assert response.status_code == 403, (path, response.text)  # ...so it is never admin
    created = httpx.post(
        guarded_server.url + "/admin/keys",
        headers={"Authorization": f"Bearer {ui_key}"},
        json={"name": "escalate", "role": "admin"},
        timeout=30,
    )
    assert created.status_code == 403


def test_admin_key_is_refused_as_ui_key(guarded_server: GuardedServer) -> None:
    # A second process on the guarded server's database: replicas share their limits there.
    env = guarded_server.env | {
        "LLMSERVER_UI_KEY": guarded_server.keys.admin,
        "LLMSERVER_DEPLOYMENT": "replicas",
    }
    log = guarded_server.root / "refused.log"
    process = spawn_server(env, log, free_port())
    try:
        exit_code = process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail("the server started with an admin key as its UI key")
    assert exit_code != 0
    text = log.read_text()
    assert "playground or user role" in text
    assert guarded_server.keys.admin not in text
    assert _secret_part(guarded_server.keys.admin) not in text
