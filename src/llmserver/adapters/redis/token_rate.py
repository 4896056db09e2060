"""The TPM windows of ``domain.token_rate`` in Redis, shared by every replica.

Per bucket, a sorted set of entry ids scored by their admission time (ms) and a hash of
each entry's tokens, with their sum under the field ``=`` (ids are decimal, so no entry
is named ``=``). Every change is one Lua script, so replicas never interleave a check
with another's entry. Reserving first drops the entries that left the window (their
tokens off the sum); settling shrinks an entry (to nothing: removes it), releasing removes
it, and both do nothing for an entry that has already left. Both keys expire a window
after the last admission, when every entry in them has left it.

A crashed replica's entries keep what they reserved until they leave the window: the
limit errs towards refusing for at most a minute, never towards admitting.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Sequence

from llmserver.adapters.redis.lease import REDIS_ERRORS
from llmserver.adapters.redis.pipe import Lua, RedisPipe
from llmserver.adapters.redis.script_args import UNPACK_LUA, packed
from llmserver.adapters.redis.turn_batch import TurnBatch
from llmserver.domain.ports import TokenRateStore
from llmserver.domain.ratelimit import WINDOW_MS, RateDecision
from llmserver.domain.token_rate import TokenHold, TokenReservation

# Numbers go back to Redis through ``int`` (``%d``): a Lua number would be written in
# exponent notation from 1e14 up. Millisecond epochs (~1.8e12) are exact in doubles.
_INT_LUA = "local function int(n) return string.format('%d', n) end\n"

_RESERVE = Lua(
    UNPACK_LUA
    + _INT_LUA
    + """
-- KEYS: per reservation its bucket's sorted set, then its hash. ARGV: window, then packed
-- per reservation: now, limit, tokens, entry id. Applied in order, each as if alone.
local window, v = tonumber(ARGV[1]), unpacked(ARGV[2])
local out = {}
for i = 1, #KEYS / 2 do
  local z, h, a = KEYS[2 * i - 1], KEYS[2 * i], 1 + 4 * (i - 1)
  local now, limit, tokens = tonumber(v[a]), tonumber(v[a + 1]), tonumber(v[a + 2])
  local held = tonumber(redis.call('HGET', h, '=') or '0')
  local gone = redis.call('ZRANGEBYSCORE', z, '-inf', now - window)
  for _, e in ipairs(gone) do
    held = held - tonumber(redis.call('HGET', h, e) or '0')
    redis.call('HDEL', h, e)
  end
  if #gone > 0 then
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now - window)
    redis.call('HSET', h, '=', int(held))
  end
  if held + tokens <= limit then
    redis.call('ZADD', z, v[a], v[a + 3])
    redis.call('HSET', h, v[a + 3], v[a + 2], '=', int(held + tokens))
    redis.call('PEXPIRE', z, window)
    redis.call('PEXPIRE', h, window)
    out[i] = {1, int(limit - held - tokens), 0, window}
  else
    -- Admissible once the oldest entries holding the excess have left the window: read
    -- a page of them at a time, and only as many pages as the excess needs.
    local excess, retry, from = held + tokens - limit, 0, 0
    while excess > 0 do
      local page = redis.call('ZRANGE', z, from, from + 63, 'WITHSCORES')
      if #page == 0 then break end
      for j = 1, #page, 2 do
        excess = excess - tonumber(redis.call('HGET', h, page[j]) or '0')
        retry = tonumber(page[j + 1]) + window - now
        if excess <= 0 then break end
      end
      from = from + 64
    end
    local last = redis.call('ZRANGE', z, -1, -1, 'WITHSCORES')
    local newest = tonumber(last[2] or now)
    out[i] = {0, int(math.max(0, limit - held)), int(retry), int(newest + window - now)}
  end
end
return out
"""
)

_CLOSE = Lua(
    UNPACK_LUA
    + _INT_LUA
    + """
-- KEYS: per change its bucket's sorted set, then its hash. ARGV: packed per change: the
-- entry id and the tokens it used (-1: released).
local v = unpacked(ARGV[1])
for i = 1, #KEYS / 2 do
  local z, h, entry, used = KEYS[2 * i - 1], KEYS[2 * i], v[2 * i - 1], tonumber(v[2 * i])
  local held = redis.call('HGET', h, entry)
  if held then
    held = tonumber(held)
    local kept = 0
    if used > 0 then kept = math.min(held, used) end
    if kept == 0 then
      -- Released, or settled to nothing: an entry holding no tokens leaves at once.
      redis.call('HDEL', h, entry)
      redis.call('ZREM', z, entry)
    else
      redis.call('HSET', h, entry, int(kept))
    end
    redis.call('HINCRBY', h, '=', int(kept - held))
  end
end
return 0
"""
)

Reserve = tuple[str, int, int, int, str]
"""The bucket, now (ms), limit, tokens, entry id."""
Close = tuple[str, str, int]
"""The bucket, entry id, tokens used (-1: released)."""


class RedisTokenRateStore(TokenRateStore):
    """``TokenRateStore`` on a sorted set and a hash per bucket, changed by Lua scripts;
    the calls of one event-loop turn go as one script (``turn_batch``)."""

    def __init__(self, pipe: RedisPipe, *, prefix: str = "llmserver:tpm:") -> None:
        self._pipe = pipe
        self._prefix = prefix
        self._reserves: TurnBatch[Reserve, list[int]] = TurnBatch(
            self._reserve_all, orphaned=self._orphaned
        )
        self._closes: TurnBatch[Close, None] = TurnBatch(self._close_all)
        self._releasing: set[asyncio.Task[None]] = set()

    def _keys(self, bucket: str) -> tuple[str, str]:
        return f"{self._prefix}{bucket}:z", f"{self._prefix}{bucket}:h"

    async def _reserve_all(self, batch: Sequence[Reserve]) -> list[list[int]]:
        keys = [key for bucket, *_ in batch for key in self._keys(bucket)]
        values = (value for _, *rest in batch for value in rest)
        replies: list[list[int]] = await self._pipe.evalsha(
            _RESERVE, keys, [WINDOW_MS, packed(values)]
        )
        return replies

    async def _close_all(self, batch: Sequence[Close]) -> list[None]:
        keys = [key for bucket, _, _ in batch for key in self._keys(bucket)]
        values = (value for _, entry, used in batch for value in (entry, used))
        await self._pipe.evalsha(_CLOSE, keys, [packed(values)])
        return [None] * len(batch)

    def _orphaned(self, item: Reserve, reply: list[int]) -> None:
        """An entry taken for a request cancelled while it waited: nobody will close it."""
        bucket, _, _, _, entry = item
        if reply[0]:
            task = asyncio.ensure_future(self._release_orphan(bucket, entry))
            self._releasing.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._releasing.discard)

    async def _release_orphan(self, bucket: str, entry: str) -> None:
        # Unreachable Redis: the entry leaves the window within a minute all the same.
        with contextlib.suppress(*REDIS_ERRORS):
            await self._closes((bucket, entry, -1))

    async def reserve(self, bucket: str, limit: int, tokens: int, now_ms: int) -> TokenReservation:
        entry = f"{now_ms}{secrets.randbelow(10**9):09d}"
        admitted, remaining, retry_after_ms, reset_after_ms = await self._reserves(
            (bucket, now_ms, limit, tokens, entry)
        )
        decision = RateDecision(
            admitted=bool(admitted),
            limit=limit,
            remaining=int(remaining),
            retry_after_ms=int(retry_after_ms),
            reset_after_ms=int(reset_after_ms),
        )
        return TokenReservation(decision, TokenHold(bucket, entry, tokens) if admitted else None)

    async def settle(self, hold: TokenHold, used: int) -> None:
        await self._closes((hold.bucket, hold.entry, max(0, used)))

    async def release(self, hold: TokenHold) -> None:
        await self._closes((hold.bucket, hold.entry, -1))
