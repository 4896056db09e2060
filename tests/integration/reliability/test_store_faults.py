"""Redis and PostgreSQL go away under load and come back.

Each test runs its own redis-server or PostgreSQL cluster (the machine's shared ones are
never stopped) and a server process with only a fast http model, so the load measures the
gateway and its stores, not a model.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from integration.reliability.faultkit import (
    SOAK,
    PostgresCluster,
    Upstream,
    create_key,
    fetch,
    http_models_file,
    keep_loading,
    metric_value,
    start_servers,
    wait_until,
)
from livesupport import (
    TEST_SECRET,
    IssuedKeys,
    RedisProcess,
    free_port,
    issue_keys,
    migrate,
    server_env,
    stop_server,
)

pytestmark = pytest.mark.slow

OUTAGE_S = 6.0 if SOAK else 2.0


def _gateway_env(database_url: str, root: Path, upstream: Upstream, **extra: str) -> dict[str, str]:
    return server_env(
        database_url,
        root / "no-demo-model",
        LLMSERVER_PROFILE="none",
        LLMSERVER_MODELS_FILE=str(http_models_file(root / "models.toml", upstream)),
        **extra,
    )


def _serve(env: dict[str, str], root: Path) -> tuple[str, IssuedKeys, list[object]]:
    migrate(env["LLMSERVER_DATABASE_URL"])
    keys = asyncio.run(issue_keys(env["LLMSERVER_DATABASE_URL"], TEST_SECRET))
    port = free_port()
    processes = start_servers([env], [root / "server.log"], [port])
    return f"http://127.0.0.1:{port}", keys, list(processes)


async def _ready(client: httpx.AsyncClient, expected: int) -> bool:
    try:
        return (await client.get("/readyz")).status_code == expected
    except httpx.TransportError:
        return False


OUTAGE_READINESS = {
    "fail_open": (200, "ready", "degraded"),
    "fail_closed": (503, "not_ready", "fail"),
}
"""/readyz during a Redis outage: ``fail_open`` serves every request, so the pod stays in the
Service; ``fail_closed`` refuses them, so traffic should go to a pod that can serve."""


async def _readiness(client: httpx.AsyncClient) -> tuple[int, str, dict[str, str]]:
    response = await client.get("/readyz")
    body = response.json()
    return response.status_code, body["status"], body["checks"]["redis"]


async def _redis_back(client: httpx.AsyncClient) -> bool:
    return await _readiness(client) == (200, "ready", {"status": "ok"})


async def _assert_outage_readiness(client: httpx.AsyncClient, policy: str) -> None:
    """Wait until /readyz sees the outage, then check it answers the policy's way (and that
    a ``fail_open`` pod answered 200 all along: it never leaves the Service)."""
    code, status, check_status = OUTAGE_READINESS[policy]
    seen: list[tuple[int, str, dict[str, str]]] = []

    async def reports_outage() -> bool:
        seen.append(await _readiness(client))
        return seen[-1][2]["status"] == check_status

    assert await wait_until(reports_outage, 10), seen[-1]
    seen.append(await _readiness(client))
    if policy == "fail_open":
        assert all(answer[:2] == (200, "ready") for answer in seen), seen
    assert seen[-1][:2] == (code, status)
    assert seen[-1][2]["status"] == check_status
    detail = seen[-1][2]["detail"]
    assert detail.startswith("redis unreachable: "), detail
    assert f"LLMSERVER_REDIS_FAILURE_POLICY={policy}" in detail


@pytest.mark.redis
@pytest.mark.parametrize("policy", ["fail_open", "fail_closed"])
async def test_redis_outage_follows_the_failure_policy(
    policy: str, private_redis: RedisProcess, upstream: Upstream, tmp_path: Path
) -> None:
    env = _gateway_env(
        f"sqlite+aiosqlite:///{tmp_path / 'llmserver.db'}",
        tmp_path,
        upstream,
        LLMSERVER_REDIS_URL=private_redis.url,
        LLMSERVER_REDIS_FAILURE_POLICY=policy,
    )
    url, keys, processes = await asyncio.to_thread(_serve, env, tmp_path)
    try:
        # Limits the load never reaches, so every request goes through the limiter and
        # reserves, settles or releases quota in Redis.
        created = await create_key(
            url, keys.admin, "redis-load", rpm_limit=1_000_000, quota_tokens=10**9
        )
        key = created["key"]
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            stop = asyncio.Event()
            load = asyncio.create_task(keep_loading(client, key, stop))
            await asyncio.sleep(1.0)
            private_redis.stop()
            down_at = time.monotonic()
            await _assert_outage_readiness(client, policy)
            await asyncio.sleep(OUTAGE_S)
            await _assert_outage_readiness(client, policy)
            restart_at = time.monotonic()
            private_redis.start()
            assert await wait_until(lambda: _redis_back(client), 20)
            recovered_at = time.monotonic()
            await asyncio.sleep(1.0)
            stop.set()
            answers = await load
    finally:
        for process in processes:
            stop_server(process)  # type: ignore[arg-type]
    # Stopped, so every settlement is written: the usage row holds exactly what was served,
    # the settlements Redis missed included.
    with sqlite3.connect(tmp_path / "llmserver.db") as db:
        usage = db.execute(
            "SELECT used_tokens, requests, reserved_tokens FROM usage WHERE key_id = ?",
            (created["details"]["id"],),
        ).fetchall()
    served = [a for a in answers if a.status == 200]
    assert usage == [(sum(a.tokens for a in served), len(served), 0)]

    # Sent and answered while Redis was down: a request sent just before the restart can
    # reach the limiter after Redis is back, and rightly be admitted.
    during = [a for a in answers if down_at <= a.sent_at and a.answered_at < restart_at]
    after = [a for a in answers if a.sent_at >= recovered_at]
    refused = [a for a in answers if a.status == 503]
    print(
        f"\nredis outage ({policy}): {len(answers)} requests, {len(during)} during the "
        f"outage, statuses {dict(Counter(a.status for a in answers))}"
    )
    assert during, "no request was sent while Redis was down"
    assert after, "no request was sent after Redis came back"
    assert all(a.status == 200 for a in after)
    if policy == "fail_open":
        assert {a.status for a in answers} == {200}
    else:
        assert {a.status for a in during} == {503}
        assert {a.status for a in answers} == {200, 503}
        assert all("retry-after" in a.headers for a in refused)


@pytest.mark.postgres
async def test_postgres_restart_loses_no_request_log_rows(
    upstream: Upstream, tmp_path: Path
) -> None:
    cluster = PostgresCluster()
    try:
        cluster.init()
        cluster.start()
        # A slow flush keeps rows queued when the database goes away.
        env = _gateway_env(cluster.url, tmp_path, upstream, LLMSERVER_LOG_FLUSH_MS="1000")
        url, keys, processes = await asyncio.to_thread(_serve, env, tmp_path)
        try:
            key = (await create_key(url, keys.admin, "pg-load", rpm_limit=1_000_000))["key"]
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                stop = asyncio.Event()
                load = asyncio.create_task(keep_loading(client, key, stop))
                await asyncio.sleep(1.5)
                await asyncio.to_thread(cluster.stop)
                down_at = time.monotonic()
                assert await wait_until(lambda: _ready(client, 503), 10)
                queued = metric_value(
                    (await client.get("/metrics")).text, "llmserver_request_log_queue_size"
                )
                await asyncio.sleep(OUTAGE_S)
                await asyncio.to_thread(cluster.start)
                up_at = time.monotonic()
                assert await wait_until(lambda: _ready(client, 200), 30)
                recovered_at = time.monotonic()
                await asyncio.sleep(1.0)
                stop.set()
                answers = await load
        finally:
            for process in processes:
                stop_server(process)  # type: ignore[arg-type]
        statuses = Counter(a.status for a in answers)
        during = [a for a in answers if down_at <= a.sent_at < up_at]
        after = [a for a in answers if a.sent_at >= recovered_at]
        rows = [
            (r["request_id"], r["status"])
            for r in await fetch(cluster.url, "SELECT request_id, status FROM request_logs")
        ]
        logged = {request_id for request_id, _ in rows}
        sent = {a.headers.get("x-request-id") for a in answers}
        served = {a.headers.get("x-request-id") for a in answers if a.status == 200}
        print(
            f"\npostgres restart: {len(answers)} requests ({len(during)} during the outage), "
            f"statuses {dict(statuses)}, {queued:.0f} rows queued at the outage, "
            f"{len(rows)} rows written, {len(served - logged)} lost"
        )
        assert during
        assert after
        assert all(a.status == 200 for a in after)
        # The outage costs availability, answered as a 503 to retry, never a 500.
        assert set(statuses) <= {200, 503}
        assert all("retry-after" in a.headers for a in answers if a.status == 503)
        # Every answered request has exactly one row, the ones queued during the outage too.
        assert len(rows) == len(logged)
        assert served <= logged <= sent
        assert sum(1 for _, status in rows if status == 200) == len(served)
    finally:
        cluster.destroy()
