"""The replicas' TPM windows and parallel slots in Redis: one limit across replicas, a
crashed replica's slots freed when its lease runs out, and the failure policy while Redis
is down (a failed release repaid when it is back).

Each "replica" is a store of its own on the shared Redis, as each server process builds
one; a crash is a replica that stops renewing its lease."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from livesupport import RedisProcess
from llmserver.adapters.redis import RedisParallelStore, RedisStores, RedisTokenRateStore
from llmserver.adapters.redis.pipe import RedisPipe
from llmserver.domain.errors import Unavailable

pytestmark = pytest.mark.redis

LEASE_S = 0.5
T = 1_780_000_000_000


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis.from_url(redis_url)
    yield redis
    await redis.aclose()


@pytest.fixture
async def prefix(client: aioredis.Redis) -> AsyncIterator[str]:
    name = f"llmtest:{secrets.token_hex(6)}:"
    yield name
    keys = [k async for k in client.scan_iter(match=f"{name}*")]
    if keys:
        await client.delete(*keys)


Replica = Callable[[], Awaitable[RedisParallelStore]]


@pytest.fixture
async def replica(
    client: aioredis.Redis, redis_pipe: RedisPipe, prefix: str
) -> AsyncIterator[Replica]:
    """Starts replicas (lease taken) on the shared Redis; closes them at the end."""
    started: list[RedisParallelStore] = []

    async def start() -> RedisParallelStore:
        store = RedisParallelStore(client, redis_pipe, prefix=prefix, lease_s=LEASE_S)
        await store.start()
        started.append(store)
        return store

    yield start
    for store in started:
        await store.close()


async def test_three_replicas_share_one_parallel_limit(replica: Replica) -> None:
    stores = [await replica() for _ in range(3)]

    admitted = await asyncio.gather(*(s.acquire("k", 4) for s in stores * 30))

    assert sum(admitted) == 4
    first = next(s for s, ok in zip(stores * 30, admitted, strict=True) if ok)
    await first.release("k")
    assert sum(await asyncio.gather(*(s.acquire("k", 4) for s in stores * 10))) == 1


async def test_a_crashed_replicas_slots_are_freed_when_its_lease_runs_out(
    replica: Replica,
) -> None:
    a, b = await replica(), await replica()
    assert await a.acquire("k", 2)
    assert await a.acquire("k", 2)
    assert not await b.acquire("k", 2)

    a.lease.stop_renewing()
    await asyncio.sleep(LEASE_S * 1.5)

    assert await b.acquire("k", 2)
    assert await b.acquire("k", 2)
    assert not await b.acquire("k", 2)


async def test_a_closed_replica_gives_its_slots_up_at_once(replica: Replica) -> None:
    a, b = await replica(), await replica()
    assert await a.acquire("k", 1)

    await a.close()

    assert await b.acquire("k", 1)


async def test_three_replicas_share_one_token_window(redis_pipe: RedisPipe, prefix: str) -> None:
    stores = [RedisTokenRateStore(redis_pipe, prefix=prefix) for _ in range(3)]

    taken = await asyncio.gather(*(s.reserve("k", 1_000, 30, T) for s in stores * 50))

    assert sum(t.hold is not None for t in taken) == 1_000 // 30


async def test_entries_settled_to_nothing_leave_the_redis_window(
    client: aioredis.Redis, redis_pipe: RedisPipe, prefix: str
) -> None:
    """Cache hits, charged nothing, leave nothing behind in Redis: a hot key's window
    would otherwise keep a minute of them (a member and a field each)."""
    store = RedisTokenRateStore(redis_pipe, prefix=prefix)
    for n in range(200):
        taken = await store.reserve("k", 10**9, 26, T + n)
        assert taken.hold is not None
        await store.settle(taken.hold, 0)
    kept = await store.reserve("k", 10**9, 26, T + 200)
    assert kept.hold is not None
    await store.settle(kept.hold, 5)

    assert await client.zcard(f"{prefix}k:z") == 1
    assert await client.hgetall(f"{prefix}k:h") == {kept.hold.entry.encode(): b"5", b"=": b"5"}


# --- Redis down -------------------------------------------------------------------------


@pytest.fixture
async def stores_on(private_redis: RedisProcess) -> AsyncIterator[dict[str, RedisStores]]:
    """A replica's stores per failure policy, on a Redis the test can stop."""
    opened = {
        policy: RedisStores.from_url(private_redis.url, failure_policy=policy)
        for policy in ("fail_open", "fail_closed")
    }
    yield opened
    for stores in opened.values():
        await stores.close()


async def test_while_redis_is_down_fail_closed_refuses_and_fail_open_admits(
    private_redis: RedisProcess, stores_on: dict[str, RedisStores]
) -> None:
    private_redis.stop()

    with pytest.raises(Unavailable, match="tpm_limiter store is unavailable"):
        await stores_on["fail_closed"].token_rate.reserve("k", 10, 5, T)
    with pytest.raises(Unavailable, match="parallel_limiter store is unavailable"):
        await stores_on["fail_closed"].parallel.acquire("k", 1)
    opened = stores_on["fail_open"]
    assert (await opened.token_rate.reserve("k", 10, 5, T)).decision.admitted
    assert await opened.parallel.acquire("k", 1)
    await opened.parallel.release("k")  # held nowhere: nothing to give back


async def test_a_release_that_failed_is_repaid_when_redis_is_back(
    private_redis: RedisProcess, stores_on: dict[str, RedisStores]
) -> None:
    stores = stores_on["fail_closed"]
    assert await stores.parallel.acquire("k", 1)
    private_redis.stop()

    await stores.parallel.release("k")  # fails, is owed

    private_redis.start()
    # A network outage rather than a restart: Redis still holds the slot.
    async with aioredis.Redis.from_url(private_redis.url) as direct:
        await direct.hset("llmserver:parallel:k", stores.parallel_slots.lease.replica, 1)
    assert await stores.parallel.acquire("k", 1)
    assert not await stores.parallel.acquire("k", 1)
