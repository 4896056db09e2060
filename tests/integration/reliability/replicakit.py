"""What the replica tests share: a fresh PostgreSQL database and Redis database for servers
in replicas mode, and the exact-limit checks run against them (several ``serve`` processes,
or one ``serve --workers N``)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import redis

from integration.reliability.faultkit import (
    MODEL,
    Tally,
    bearer,
    chat_body,
    count_rows,
    create_key,
    start_servers,
    usage_of,
)
from livesupport import (
    TEST_SECRET,
    IssuedKeys,
    free_port,
    issue_keys,
    migrate,
    server_env,
    stop_server,
)

PRICED = "dear"
PRICE = Decimal(100)
"""Dollars per million tokens, input and output, of the ``http_replicas`` fixture's
``PRICED`` model (the upstream's ``fast`` answers): $0.0001 a token."""

SHARED_REDIS = os.environ.get("LLMSERVER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
WINDOW_S = 60
"""The RPM limiter's sliding window."""
RETRY_AFTER_MOST_S = WINDOW_S + 1
"""The longest ``Retry-After`` a window refusal may carry across replicas: a request's wait
runs from the instant it was created, another replica may have admitted one created a few
ms later that reached Redis first (the window's oldest entry then leaves a little more than
a window after it), and the header rounds up to whole seconds: 61, seen in CI."""


@dataclass
class Replicas:
    """Servers in replicas mode on one database: several URLs (one per ``serve`` process)
    or one (``serve --workers N``)."""

    urls: list[str]
    keys: IssuedKeys
    database_url: str
    logs: list[Path]

    @property
    def admin_key(self) -> str:
        return self.keys.admin


async def _postgres_admin(server_url: str, sql: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    server = make_url(server_url).set(drivername="postgresql", database="postgres")
    conn = await asyncpg.connect(server.render_as_string(hide_password=False), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def fresh_database(server_url: str) -> str:
    """A new empty database on the server of ``server_url`` (its asyncpg URL)."""
    from sqlalchemy.engine import make_url

    name = f"llmserver_rel_{uuid.uuid4().hex[:12]}"
    asyncio.run(_postgres_admin(server_url, f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(drivername="postgresql+asyncpg", database=name)
    return url.render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    asyncio.run(_postgres_admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _claimable_redis_dbs() -> range:
    """The shared Redis's databases this pytest process may claim: 15 down to 1, or under
    pytest-xdist every Nth of them from its own start, so that two workers never both find
    one empty and take it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1", ...
    if worker is None:
        return range(15, 0, -1)
    workers = int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    return range(15 - int(worker.removeprefix("gw")), 0, -workers)


def unused_redis_db() -> tuple[redis.Redis, str]:
    """A client of, and the URL of, a database of the shared Redis that holds nothing, so
    the test owns it (and flushes it when done)."""
    base = SHARED_REDIS.rsplit("/", 1)[0]
    for db in _claimable_redis_dbs():
        client = redis.Redis.from_url(f"{base}/{db}")
        try:
            if client.dbsize() == 0:
                return client, f"{base}/{db}"
        except redis.RedisError as exc:
            pytest.skip(f"no Redis server at {base}: {exc}")
        client.close()
    pytest.skip("every database of the shared Redis is in use")


@dataclass
class SharedStores:
    env: dict[str, str]
    database_url: str
    keys: IssuedKeys


@contextmanager
def shared_stores(
    postgres_url: str, demo_model_dir: Path, **extra_env: str
) -> Iterator[SharedStores]:
    """A migrated database with the test keys and an empty Redis database, both dropped on
    exit, and the environment of a server in replicas mode on them."""
    database_url = fresh_database(postgres_url)
    client, redis_url = unused_redis_db()
    env = server_env(
        database_url,
        demo_model_dir,
        LLMSERVER_REDIS_URL=redis_url,
        LLMSERVER_TORCH_THREADS="1",
        **extra_env,
    )
    try:
        migrate(database_url)
        keys = asyncio.run(issue_keys(database_url, TEST_SECRET))
        yield SharedStores(env, database_url, keys)
    finally:
        client.flushdb()
        client.close()
        drop_database(database_url)


@contextmanager
def running_replicas(
    postgres_url: str, demo_model_dir: Path, root: Path, **extra_env: str
) -> Iterator[Replicas]:
    """Three ``serve`` processes in replicas mode on ``shared_stores``, logging under
    ``root``, stopped on exit."""
    with shared_stores(postgres_url, demo_model_dir, **extra_env) as stores:
        ports = [free_port() for _ in range(3)]
        logs = [root / f"replica-{i}.log" for i in range(3)]
        processes = start_servers([stores.env] * 3, logs, ports)
        try:
            urls = [f"http://127.0.0.1:{p}" for p in ports]
            yield Replicas(urls, stores.keys, stores.database_url, logs)
        finally:
            for process in processes:
                stop_server(process)


async def fire(
    servers: Replicas, key: str, bodies: list[dict[str, object]], concurrency: int
) -> Tally:
    """Send the bodies round-robin over the servers' URLs, at most ``concurrency`` at a time,
    each on a connection of its own."""
    tally = Tally()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    servers.urls[i % len(servers.urls)] + "/v1/chat/completions",
                    headers=bearer(key),
                    json=body,
                )
                for i, body in enumerate(bodies)
            )
        )
    for response in responses:
        tally.add(response)
    return tally


async def check_rpm_burst(
    servers: Replicas, rpm: int, burst: int, concurrency: int, model: str = MODEL
) -> None:
    """A burst on a fresh key gets exactly ``rpm`` answers, the rest 429 with Retry-After."""
    created = await create_key(servers.urls[0], servers.admin_key, f"rpm-{rpm}", rpm_limit=rpm)
    started = time.monotonic()
    bodies = [chat_body(max_tokens=2, cache=False, model=model) for _ in range(burst)]
    tally = await fire(servers, created["key"], bodies, concurrency)
    elapsed = time.monotonic() - started
    print(
        f"\nrpm {rpm} on {len(servers.urls)} url(s): {burst} requests in {elapsed:.1f}s -> "
        f"{tally.count(200)} x 200, {tally.count(429)} x 429"
    )
    assert set(tally.statuses) == {200, 429}
    assert tally.retry_after_missing == 0
    # The limit is a sliding minute: exact when the whole burst fits in one.
    assert elapsed < WINDOW_S, "the burst outlasted the rate-limit window; nothing to check"
    assert tally.count(200) == rpm
    assert tally.count(429) == burst - rpm


async def check_quota(
    servers: Replicas, quota_requests: int, hammer: int, concurrency: int, model: str = MODEL
) -> None:
    """``hammer`` requests on a key whose quota holds ``quota_requests`` answers' usage: at
    least as many are admitted as the quota holds reservations, never more tokens than the
    quota are used, and the usage row and request log agree with the answers."""
    urls = servers.urls
    prompt, max_tokens = "Count the sheep in the meadow.", 8
    body = chat_body(prompt, max_tokens=max_tokens, cache=False, model=model)
    async with httpx.AsyncClient(timeout=60) as client:
        probe = await client.post(
            urls[0] + "/v1/chat/completions", headers=bearer(servers.keys.user), json=body
        )
        # What admission reserves: the prompt as the gateway counts it (for an http model a
        # bound on its bytes, well above the upstream's own count in the answer's usage),
        # plus max_tokens.
        counted = await client.post(
            urls[0] + "/v1/messages/count_tokens",
            headers=bearer(servers.keys.user),
            json={"model": model, "messages": [{"role": "user", "content": prompt}]},
        )
    assert probe.status_code == 200, probe.text
    assert counted.status_code == 200, counted.text
    # The quota holds quota_requests answers by their usage, so it binds on what is used.
    quota = quota_requests * (probe.json()["usage"]["prompt_tokens"] + max_tokens)
    held = counted.json()["input_tokens"] + max_tokens
    created = await create_key(
        urls[1 % len(urls)], servers.admin_key, f"quota-{quota_requests}", quota_tokens=quota
    )
    key_id = created["details"]["id"]

    tally = await fire(servers, created["key"], [dict(body) for _ in range(hammer)], concurrency)
    usage = await usage_of(urls[2 % len(urls)], servers.admin_key, key_id)
    print(
        f"\nquota {quota} on {len(urls)} url(s): {hammer} requests -> {tally.count(200)} x 200, "
        f"{tally.count(429)} x 429, used {usage['used_tokens']}, reported {tally.usage_tokens}"
    )
    assert set(tally.statuses) <= {200, 429}
    # Each admitted request held its full reservation while it ran, so at least as many
    # as the quota holds reservations got in (quota_requests where the gateway counts the
    # prompt as the model does; fewer for an http model, whose count is a bound: a burst
    # that all reserves before any settles, as under a loaded CI, admits just those); more
    # as they settle to what they used.
    assert tally.count(200) >= quota // held
    assert usage["used_tokens"] <= quota
    assert usage["reserved_tokens"] == 0
    assert usage["used_tokens"] == tally.usage_tokens
    assert usage["requests"] == tally.count(200)

    async def logged_tokens() -> int:
        return await count_rows(
            servers.database_url,
            "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM request_logs "
            "WHERE key_id = $1 AND status = 200",
            key_id,
        )

    for _ in range(50):
        if await logged_tokens() == tally.usage_tokens:
            break
        await asyncio.sleep(0.1)
    assert await logged_tokens() == tally.usage_tokens
    assert (
        await count_rows(
            servers.database_url, "SELECT COUNT(*) FROM request_logs WHERE key_id = $1", key_id
        )
        == hammer
    )
