"""Liveness, readiness and the request id, on a real app (SQLite, demo model)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from livesupport import (
    REPO,
    LiveServer,
    free_port,
    server_env,
    spawn_server,
    start_server,
    stop_server,
)


def test_healthz_and_readyz_are_ok_on_the_live_server(live_server: LiveServer) -> None:
    assert httpx.get(live_server.base_url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(live_server.base_url + "/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "models"}
    assert all(check["status"] == "ok" for check in body["checks"].values())


def test_request_id_is_echoed_when_sent(live_server: LiveServer) -> None:
    # /healthz's access line is DEBUG (probes would drown the log), so the logged id is
    # checked on an API route.
    response = httpx.get(
        live_server.base_url + "/v1/models",
        headers={
            "X-Request-ID": "trace-abc-123",
            "Authorization": f"Bearer {live_server.user_key}",
        },
    )
    assert response.headers["x-request-id"] == "trace-abc-123"
    # The access line is written at the end of the event-loop turn the response left in,
    # so it may reach the log a moment after the response reached us.
    deadline = time.monotonic() + 5
    while '"request_id":"trace-abc-123"' not in live_server.logs().replace(": ", ":"):
        assert time.monotonic() < deadline, live_server.logs()[-2000:]
        time.sleep(0.02)


def test_request_id_is_generated_when_absent_or_unusable(live_server: LiveServer) -> None:
    first = httpx.get(live_server.base_url + "/healthz").headers["x-request-id"]
    second = httpx.get(
        live_server.base_url + "/healthz", headers={"X-Request-ID": "x" * 500}
    ).headers["x-request-id"]
    assert len(first) == 32
    assert len(second) == 32
    assert first != second


def test_error_responses_carry_the_request_id_too(live_server: LiveServer) -> None:
    response = httpx.get(live_server.base_url + "/v1/models", headers={"X-Request-ID": "rid-401"})
    assert response.status_code == 401
    assert response.headers["x-request-id"] == "rid-401"


@pytest.mark.slow
def test_readyz_is_503_when_the_database_is_unreachable(
    tmp_path: Path, demo_model_dir: Path
) -> None:
    closed = free_port()
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{closed}/nowhere"
    # No model: the database is what is checked, and a model would only slow the start.
    env = server_env(url, demo_model_dir, LLMSERVER_PROFILE="none")
    port = free_port()
    log = tmp_path / "server.log"
    proc = spawn_server(env, log, port)
    try:
        body = None
        for _ in range(100):
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
            except httpx.TransportError:
                import time

                time.sleep(0.2)
                continue
            body = response.json()
            if body["checks"].get("models", {}).get("status") == "ok":
                break
            import time

            time.sleep(0.2)
        assert body is not None, log.read_text()
        assert response.status_code == 503
        assert body["status"] == "not_ready"
        assert body["checks"]["database"]["status"] == "fail"
        assert "unreachable" in body["checks"]["database"]["detail"]
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    finally:
        stop_server(proc)


@pytest.mark.slow
def test_readyz_is_503_until_migrated(tmp_path: Path, demo_model_dir: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    env = server_env(url, demo_model_dir, LLMSERVER_PROFILE="none")  # as above
    port = free_port()
    log = tmp_path / "server.log"
    proc = spawn_server(env, log, port)
    try:
        import time

        for _ in range(100):
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
                if response.json()["checks"]["models"]["status"] == "ok":
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert response.status_code == 503
        assert "llmserver migrate" in response.json()["checks"]["database"]["detail"]
    finally:
        stop_server(proc)
    subprocess.run(
        [sys.executable, "-m", "llmserver.cli", "migrate"],
        env=env,
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    proc = start_server(env, log, free_port())  # start_server waits for /readyz == 200
    stop_server(proc)
