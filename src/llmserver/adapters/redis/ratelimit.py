from __future__ import annotations

import secrets
from collections.abc import Sequence

from llmserver.adapters.redis.pipe import Lua, RedisPipe
from llmserver.adapters.redis.script_args import UNPACK_LUA, packed
from llmserver.adapters.redis.turn_batch import TurnBatch
from llmserver.domain.ports import RateLimitStore
from llmserver.domain.ratelimit import WINDOW_MS, RateDecision

# The sliding-window log of ``domain.ratelimit.decide_window``, run atomically inside Redis so
# every gateway process shares one limit. The sorted set holds one member per admitted
# request, scored by its millisecond timestamp. Lua numbers are doubles: millisecond
# epochs (~1.7e12) are exact. One call decides a batch, in order: the acquisitions made in
# one event-loop turn (see ``turn_batch``), each as if made alone.
_ACQUIRE = Lua(
    UNPACK_LUA
    + """
-- KEYS: one sorted set per acquisition. ARGV: window, then packed (``script_args``) per
-- acquisition: now, limit, member. Live entries are those with ts > now - window.
local window, v = tonumber(ARGV[1]), unpacked(ARGV[2])
local out = {}
for i = 1, #KEYS do
  local key, a = KEYS[i], 1 + 3 * (i - 1)
  local now, limit = tonumber(v[a]), tonumber(v[a + 1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  if count < limit then
    redis.call('ZADD', key, v[a], v[a + 2])
    redis.call('PEXPIRE', key, window)
    out[i] = {1, limit - count - 1, 0, window}
  else
    local blocker = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
    local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    out[i] = {0, 0, tonumber(blocker[2]) + window - now, tonumber(newest[2]) + window - now}
  end
end
return out
"""
)

Acquisition = tuple[str, int, int, str]
"""The sorted set, now (ms), limit, member."""


class RedisRateLimitStore(RateLimitStore):
    """``RateLimitStore`` on a Redis sorted set per bucket, decided by one Lua script."""

    def __init__(self, pipe: RedisPipe, *, prefix: str = "llmserver:rpm:") -> None:
        self._pipe = pipe
        self._prefix = prefix
        self._acquisitions: TurnBatch[Acquisition, list[int]] = TurnBatch(self._decide_all)

    async def _decide_all(self, batch: Sequence[Acquisition]) -> list[list[int]]:
        values = (value for _, now_ms, limit, member in batch for value in (now_ms, limit, member))
        replies: list[list[int]] = await self._pipe.evalsha(
            _ACQUIRE, [a[0] for a in batch], [WINDOW_MS, packed(values)]
        )
        return replies

    async def acquire(self, bucket: str, limit: int, now_ms: int) -> RateDecision:
        # The member must be unique per request: two requests in the same millisecond
        # are two entries.
        member = f"{now_ms}:{secrets.token_hex(8)}"
        admitted, remaining, retry_after_ms, reset_after_ms = await self._acquisitions(
            (self._prefix + bucket, now_ms, limit, member)
        )
        return RateDecision(
            admitted=bool(admitted),
            limit=limit,
            remaining=int(remaining),
            retry_after_ms=int(retry_after_ms),
            reset_after_ms=int(reset_after_ms),
        )
