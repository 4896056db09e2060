from __future__ import annotations

from collections.abc import Callable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from llmserver.adapters.pending_usage import DurableUsage
from llmserver.adapters.redis.cache import RedisHotCache
from llmserver.adapters.redis.guarded_limiter import FailurePolicy, GuardedRateLimitStore
from llmserver.adapters.redis.guarded_limits import GuardedParallelStore, GuardedTokenRateStore
from llmserver.adapters.redis.parallel import RedisParallelStore
from llmserver.adapters.redis.pipe import RedisPipe
from llmserver.adapters.redis.ratelimit import RedisRateLimitStore
from llmserver.adapters.redis.token_rate import RedisTokenRateStore
from llmserver.adapters.redis.usage import RedisUsageStore


class RedisStores:
    """The Redis-backed stores on one client, built once by the composition root.

    ``limiter``, ``token_rate``, ``parallel`` and ``usage_store`` apply the failure policy;
    ``hot_cache`` treats every error as a miss. All report each Redis error to ``on_error``
    with their component's name.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        pipe: RedisPipe,
        *,
        failure_policy: FailurePolicy | str,
        prefix: str = "llmserver:",
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.pipe = pipe
        self._prefix = prefix
        self._policy = failure_policy
        self._on_error = on_error
        self.limiter = GuardedRateLimitStore(
            RedisRateLimitStore(pipe, prefix=f"{prefix}rpm:"), failure_policy, on_error=on_error
        )
        self.token_rate = GuardedTokenRateStore(
            RedisTokenRateStore(pipe, prefix=f"{prefix}tpm:"), failure_policy, on_error=on_error
        )
        self.parallel_slots = RedisParallelStore(client, pipe, prefix=prefix, on_error=on_error)
        """Holds this replica's lease: started and closed with the server."""
        self.parallel = GuardedParallelStore(self.parallel_slots, failure_policy, on_error=on_error)
        self.hot_cache = RedisHotCache(client, prefix=f"{prefix}hot:", on_error=on_error, pipe=pipe)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        failure_policy: FailurePolicy | str,
        prefix: str = "llmserver:",
        timeout_s: float = 0.5,
        max_connections: int = 100,
        pool_wait_s: float = 10.0,
        on_error: Callable[[str], None] | None = None,
    ) -> RedisStores:
        # Short timeouts and a single immediate retry (which replaces a pooled connection
        # a Redis restart has closed): an unreachable Redis must cost a request
        # milliseconds before the failure policy decides, not seconds of backoff.
        # A blocking pool: with more requests in flight than pooled connections, the plain
        # pool raises MaxConnectionsError at once, which the failure policy would take for
        # an outage (fail_open then admits past the RPM limit under load). Waiting for a
        # connection is bounded; a Redis that is down frees its connections in timeout_s.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=pool_wait_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
        )
        client = aioredis.Redis.from_pool(pool)
        pipe = RedisPipe(url, timeout_s=timeout_s)
        return cls(client, pipe, failure_policy=failure_policy, prefix=prefix, on_error=on_error)

    def usage_store(self, durable: DurableUsage, ledger: str = "usage") -> RedisUsageStore:
        """Quota (or, ``ledger="budget"``, budget) counters shared by replicas, written
        behind to ``durable``."""
        return RedisUsageStore(
            self.client,
            durable,
            policy=self._policy,
            prefix=self._prefix,
            ledger=ledger,
            on_error=self._on_error,
            pipe=self.pipe,
        )

    async def ping(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self.pipe.close()
        await self.client.aclose()
