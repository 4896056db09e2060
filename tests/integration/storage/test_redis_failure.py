from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from structlog.testing import capture_logs

from livesupport import RedisProcess
from llmserver.adapters.redis import FailurePolicy, RedisStores
from llmserver.domain.errors import Unavailable
from llmserver.domain.inference import FinishReason
from llmserver.domain.ports import CachedCompletion

pytestmark = pytest.mark.redis

T = 1_780_000_000_000
NOW = datetime(2026, 3, 14, tzinfo=UTC)
ENTRY = CachedCompletion(
    key="k",
    model="tiny",
    text="hi",
    prompt_tokens=1,
    completion_tokens=1,
    finish_reason=FinishReason.STOP,
    created_at=NOW,
    expires_at=NOW + timedelta(hours=1),
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def reported() -> list[str]:
    """The components each Redis error was reported for (what the metrics count)."""
    return []


@pytest.fixture
async def closed_port_stores(
    reported: list[str],
) -> AsyncIterator[dict[FailurePolicy, RedisStores]]:
    url = f"redis://127.0.0.1:{free_port()}/0"
    stores = {
        policy: RedisStores.from_url(url, failure_policy=policy, on_error=reported.append)
        for policy in FailurePolicy
    }
    yield stores
    for store in stores.values():
        await store.close()


async def test_fail_open_admits_logs_and_reports_when_redis_is_unreachable(
    closed_port_stores: dict[FailurePolicy, RedisStores], reported: list[str]
) -> None:
    stores = closed_port_stores[FailurePolicy.FAIL_OPEN]

    with capture_logs() as logs:
        decision = await stores.limiter.acquire("b", 5, T)

    assert decision.admitted
    assert reported == ["limiter"]
    assert logs[0]["event"] == "rate_limiter_unavailable"
    assert logs[0]["policy"] == "fail_open"
    assert logs[0]["log_level"] == "warning"


async def test_fail_closed_refuses_with_unavailable(
    closed_port_stores: dict[FailurePolicy, RedisStores], reported: list[str]
) -> None:
    stores = closed_port_stores[FailurePolicy.FAIL_CLOSED]

    with pytest.raises(Unavailable, match="rate limiter is unavailable"):
        await stores.limiter.acquire("b", 5, T)

    assert reported == ["limiter"]


async def test_the_hot_cache_treats_an_unreachable_redis_as_a_miss(
    closed_port_stores: dict[FailurePolicy, RedisStores], reported: list[str]
) -> None:
    cache = closed_port_stores[FailurePolicy.FAIL_CLOSED].hot_cache

    await cache.put(ENTRY, ttl_seconds=60)

    assert await cache.get("k") is None
    assert reported == ["hot_cache", "hot_cache"]


@pytest.mark.parametrize("policy", list(FailurePolicy))
async def test_redis_stopping_mid_test_applies_the_policy_and_recovers(
    redis_server: RedisProcess, policy: FailurePolicy, reported: list[str]
) -> None:
    await asyncio.to_thread(redis_server.start)
    stores = RedisStores.from_url(redis_server.url, failure_policy=policy, on_error=reported.append)
    try:
        assert (await stores.limiter.acquire("b", 2, T)).remaining == 1
        await stores.hot_cache.put(ENTRY, ttl_seconds=60)
        assert await stores.hot_cache.get("k") == ENTRY

        redis_server.stop()
        if policy is FailurePolicy.FAIL_OPEN:
            assert (await stores.limiter.acquire("b", 2, T + 1)).admitted
        else:
            with pytest.raises(Unavailable):
                await stores.limiter.acquire("b", 2, T + 1)
        assert await stores.hot_cache.get("k") is None
        assert reported == ["limiter", "hot_cache"]

        # A restarted (empty) Redis is used again without any intervention.
        await asyncio.to_thread(redis_server.start)
        decision = await stores.limiter.acquire("b", 2, T + 2)
        assert decision.admitted
        assert decision.remaining == 1
        assert reported == ["limiter", "hot_cache"]
    finally:
        await stores.close()


@pytest.mark.parametrize(
    "stored",
    [
        b"\x91\xa1x",  # msgpack, but not the entry's array
        b"not msgpack at all \xc1",
        # The entry's array with a finish reason the server does not know.
        msgspec.msgpack.encode(["k", "tiny", "hi", 1, 1, "not-a-reason", NOW, NOW, 0]),
    ],
    ids=["wrong-shape", "garbage", "unknown-finish-reason"],
)
async def test_the_hot_cache_treats_an_unreadable_value_as_a_miss(
    redis_url: str, reported: list[str], stored: bytes
) -> None:
    prefix = f"test-unreadable-{uuid.uuid4().hex}:"
    stores = RedisStores.from_url(
        redis_url, failure_policy=FailurePolicy.FAIL_OPEN, prefix=prefix, on_error=reported.append
    )
    try:
        await stores.hot_cache.put(ENTRY, ttl_seconds=60)
        [hot_key] = [k async for k in stores.client.scan_iter(match=f"{prefix}hot:*")]
        await stores.client.set(hot_key, stored, ex=60)

        assert await stores.hot_cache.get(ENTRY.key) is None
        assert reported == ["hot_cache"]
    finally:
        await stores.client.delete(*[k async for k in stores.client.scan_iter(match=f"{prefix}*")])
        await stores.close()


async def test_a_pooled_connection_a_redis_restart_closed_is_replaced_not_an_outage(
    private_redis: RedisProcess,
) -> None:
    """The one immediate retry reconnects: under fail_closed, the first requests after
    Redis restarted are served, not refused on the connections it closed."""
    stores = RedisStores.from_url(private_redis.url, failure_policy=FailurePolicy.FAIL_CLOSED)
    try:
        await asyncio.gather(*(stores.limiter.acquire(f"b{i}", 100, T) for i in range(20)))
        private_redis.stop()
        private_redis.start()

        decisions = await asyncio.gather(
            *(stores.limiter.acquire(f"b{i}", 100, T + 1) for i in range(20))
        )
    finally:
        await stores.close()

    assert all(d.admitted for d in decisions)
