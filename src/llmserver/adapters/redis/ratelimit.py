from __future__ import annotations

import secrets
from typing import Any

import redis.asyncio as aioredis

from llmserver.domain.ports import RateLimitStore
from llmserver.domain.ratelimit import WINDOW_MS, RateDecision

# The sliding-window log of ``domain.ratelimit.decide_window``, run atomically inside Redis so
# every gateway process shares one limit. The sorted set holds one member per admitted
# request, scored by its millisecond timestamp. Lua numbers are doubles: millisecond
# epochs (~1.7e12) are exact.
_ACQUIRE = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
-- live entries are those with ts > now - window
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, now, ARGV[4])
  redis.call('PEXPIRE', key, window)
  return {1, limit - count - 1, 0, window}
end
local blocker = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
return {0, 0, tonumber(blocker[2]) + window - now, tonumber(newest[2]) + window - now}
"""


class RedisRateLimitStore(RateLimitStore):
    """``RateLimitStore`` on a Redis sorted set per bucket, decided by one Lua script."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = "llmserver:rpm:") -> None:
        self._client = client
        self._prefix = prefix
        self._script: Any = client.register_script(_ACQUIRE)

    async def acquire(self, bucket: str, limit: int, now_ms: int) -> RateDecision:
        # The member must be unique per request: two requests in the same millisecond
        # are two entries.
        member = f"{now_ms}:{secrets.token_hex(8)}"
        admitted, remaining, retry_after_ms, reset_after_ms = await self._script(
            keys=[self._prefix + bucket], args=[now_ms, limit, WINDOW_MS, member]
        )
        return RateDecision(
            admitted=bool(admitted),
            limit=limit,
            remaining=int(remaining),
            retry_after_ms=int(retry_after_ms),
            reset_after_ms=int(reset_after_ms),
        )
