"""A full model queue answers 503 with Retry-After; the first start can print an admin key."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from livesupport import (
    free_port,
    migrate,
    running_server,
    server_env,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.slow

KEY = re.compile(r"llms_[a-z0-9]{12}_[A-Za-z0-9_-]{16,}")


def test_queue_full_is_503_with_retry_after(tmp_path: Path, demo_model_dir: Path) -> None:
    with running_server(
        tmp_path, demo_model_dir, LLMSERVER_MAX_QUEUE="1", LLMSERVER_MAX_BATCH_SIZE="1"
    ) as server:

        async def one(client: httpx.AsyncClient, key: str, path: str, i: int) -> httpx.Response:
            return await client.post(
                f"{server.base_url}{path}",
                json={
                    "model": "demo",
                    "messages": [{"role": "user", "content": f"request {i}"}],
                    "max_tokens": 400,
                    "temperature": 0.8,
                },
                headers={"Authorization": f"Bearer {key}"},
            )

        async def burst(key: str, path: str) -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=120) as client:
                return await asyncio.gather(*(one(client, key, path, i) for i in range(8)))

        responses = asyncio.run(burst(server.admin_key, "/v1/chat/completions"))
        codes = sorted(r.status_code for r in responses)
        assert 200 in codes
        assert 503 in codes
        assert set(codes) <= {200, 503}
        refused = next(r for r in responses if r.status_code == 503)
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["code"] == "model_overloaded"
        # Anthropic's API answers a full queue with 529 overloaded_error (the anthropic
        # SDK's OverloadedError), not the 503 it keeps for a service that is down.
        messages = asyncio.run(burst(server.admin_key, "/v1/messages"))
        codes = sorted(r.status_code for r in messages)
        assert 529 in codes, codes
        assert set(codes) <= {200, 529}, codes
        refused = next(r for r in messages if r.status_code == 529)
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["type"] == "overloaded_error"
        # the server keeps serving once the queue drains
        assert asyncio.run(burst_one(server.base_url, server.admin_key)) == 200


def _rename_table(db: Path, old: str, new: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(f"ALTER TABLE {old} RENAME TO {new}")


def test_a_backed_up_request_log_is_503_with_its_own_code(
    tmp_path: Path, demo_model_dir: Path
) -> None:
    db = tmp_path / "log.db"

    def ask(client: httpx.Client) -> httpx.Response:
        # An unknown model: a logged request that costs no generation.
        return client.post(
            "/v1/chat/completions",
            json={"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]},
        )

    with (
        running_server(
            tmp_path,
            demo_model_dir,
            database_url=f"sqlite+aiosqlite:///{db}",
            LLMSERVER_PROFILE="none",  # no model: only unknown ones are asked for
            LLMSERVER_LOG_BATCH_ROWS="1",
            LLMSERVER_LOG_QUEUE_MAX="2",
        ) as server,
        httpx.Client(
            base_url=server.base_url,
            timeout=30,
            headers={"Authorization": f"Bearer {server.user_key}"},
        ) as client,
    ):
        _rename_table(db, "request_logs", "request_logs_away")  # log writes now fail
        answers = [ask(client) for _ in range(3)]
        _rename_table(db, "request_logs_away", "request_logs")
        assert [a.status_code for a in answers] == [404, 404, 503]
        error = answers[-1].json()["error"]
        assert (error["code"], error["type"]) == ("request_log_backlog", "service_unavailable")
        assert int(answers[-1].headers["retry-after"]) >= 1
        # Once the rows are written, new work is taken again.
        deadline = time.monotonic() + 20
        while ask(client).status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ask(client).status_code == 404


async def burst_one(base_url: str, key: str) -> int:
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.post(
            f"{base_url}/v1/chat/completions",
            json={"model": "demo", "messages": [{"role": "user", "content": "x"}], "max_tokens": 2},
            headers={"Authorization": f"Bearer {key}"},
        )
        return response.status_code


def test_first_start_prints_an_admin_key_once(tmp_path: Path, demo_model_dir: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'b.db'}"
    # No model: the bootstrap key does not depend on one, and each start would load it.
    env = server_env(
        url, demo_model_dir, LLMSERVER_BOOTSTRAP_ADMIN="true", LLMSERVER_PROFILE="none"
    )
    migrate(url)
    log = tmp_path / "server.log"
    port = free_port()
    proc = start_server(env, log, port)
    try:
        printed = KEY.findall(log.read_text())
        assert len(printed) == 1
        response = httpx.get(
            f"http://127.0.0.1:{port}/admin/keys", headers={"Authorization": f"Bearer {printed[0]}"}
        )
        assert response.status_code == 200
        assert [k["role"] for k in response.json()["data"]] == ["admin"]
    finally:
        stop_server(proc)
    stop_server(start_server(env, log, free_port()))
    text = log.read_text()
    assert KEY.findall(text) == printed, "the admin key is printed on the first start only"
    # only the key's public prefix may appear in structured log lines
    structured = [line for line in text.splitlines() if line.startswith("{")]
    assert not any(printed[0] in line for line in structured)


def test_start_up_refuses_a_missing_server_secret(tmp_path: Path, demo_model_dir: Any) -> None:
    import subprocess
    import sys

    env = server_env(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", demo_model_dir)
    env["LLMSERVER_ENV"] = "production"
    del env["LLMSERVER_SERVER_SECRET"]
    result = subprocess.run(
        [sys.executable, "-m", "llmserver.cli", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "LLMSERVER_SERVER_SECRET" in result.stderr


def test_start_up_refuses_an_invalid_setting(tmp_path: Path, demo_model_dir: Any) -> None:
    import subprocess
    import sys

    env = server_env(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", demo_model_dir)
    env["LLMSERVER_MAX_QUEUE"] = "lots"
    result = subprocess.run(
        [sys.executable, "-m", "llmserver.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "LLMSERVER_MAX_QUEUE" in result.stderr
    assert "an integer" in result.stderr
