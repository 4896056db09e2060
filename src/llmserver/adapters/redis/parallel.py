"""Requests in flight per bucket, in Redis, shared by every replica.

One hash per bucket: a field per replica, its requests in flight. Taking a slot is one Lua
script that sums the fields of live replicas, drops those of replicas whose lease key has
gone (a crashed replica's requests will never end) and adds one to the caller's field iff
the sum is under the limit; releasing takes one off the caller's own field. A replica
holds its lease (``lease.ReplicaLease``) while it runs: ``lease_s`` after a crash, its
slots are free again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

import redis.asyncio as aioredis

from llmserver.adapters.redis.lease import REDIS_ERRORS, ReplicaLease
from llmserver.adapters.redis.pipe import Lua, RedisPipe
from llmserver.adapters.redis.script_args import UNPACK_LUA, packed
from llmserver.adapters.redis.turn_batch import TurnBatch
from llmserver.domain.ports import ParallelStore

_ACQUIRE = Lua(
    UNPACK_LUA
    + """
-- KEYS: one hash per acquisition (repeats allowed). ARGV: me, the lease key prefix, then
-- packed limits, one per acquisition. Applied in order, each as if alone.
local me, lease, limits = ARGV[1], ARGV[2], unpacked(ARGV[3])
local out = {}
for i = 1, #KEYS do
  local h, held = KEYS[i], 0
  local fields = redis.call('HGETALL', h)
  for j = 1, #fields, 2 do
    local owner = fields[j]
    if owner == me or redis.call('EXISTS', lease .. owner) == 1 then
      held = held + tonumber(fields[j + 1])
    else
      redis.call('HDEL', h, owner)
    end
  end
  if held < tonumber(limits[i]) then
    redis.call('HINCRBY', h, me, 1)
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""
)

_RELEASE = Lua(
    """
-- KEYS: one hash per release (repeats allowed). ARGV: me.
for i = 1, #KEYS do
  if redis.call('HINCRBY', KEYS[i], ARGV[1], -1) <= 0 then
    redis.call('HDEL', KEYS[i], ARGV[1])
  end
end
return 0
"""
)

Acquisition = tuple[str, int]
"""The bucket's hash, the limit."""


class RedisParallelStore(ParallelStore):
    """``ParallelStore`` on a hash per bucket; the calls of one event-loop turn go as one
    script (``turn_batch``). ``start`` takes this replica's lease, ``close`` gives it up."""

    def __init__(
        self,
        client: aioredis.Redis,
        pipe: RedisPipe,
        *,
        prefix: str = "llmserver:",
        lease_s: float = 15.0,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        """``on_error("parallel_lease")``: a renewal failed (the next one retries; the lease
        outlives two failures)."""
        self._pipe = pipe
        self._prefix = f"{prefix}parallel:"
        self._on_error = on_error
        self.lease = ReplicaLease(client, f"{prefix}parallel-replica:", lease_s, self._failed)
        self._acquires: TurnBatch[Acquisition, int] = TurnBatch(
            self._acquire_all, orphaned=self._orphaned
        )
        self._releases: TurnBatch[str, None] = TurnBatch(self._release_all)
        self._releasing: set[asyncio.Task[None]] = set()

    def _failed(self, _: BaseException) -> None:
        if self._on_error is not None:
            self._on_error("parallel_lease")

    async def start(self) -> None:
        await self.lease.start()

    async def close(self) -> None:
        await self.lease.close()

    async def _acquire_all(self, batch: Sequence[Acquisition]) -> list[int]:
        lease = self.lease
        replies: list[int] = await self._pipe.evalsha(
            _ACQUIRE,
            [key for key, _ in batch],
            [lease.replica, lease.prefix, packed(limit for _, limit in batch)],
        )
        return replies

    async def _release_all(self, batch: Sequence[str]) -> list[None]:
        await self._pipe.evalsha(_RELEASE, batch, [self.lease.replica])
        return [None] * len(batch)

    def _orphaned(self, item: Acquisition, admitted: int) -> None:
        """A slot taken for a request cancelled while it waited: nobody will give it back."""
        if admitted:
            task = asyncio.ensure_future(self._release_quietly(item[0]))
            self._releasing.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._releasing.discard)

    async def _release_quietly(self, key: str) -> None:
        with contextlib.suppress(*REDIS_ERRORS):
            await self._releases(key)

    async def acquire(self, bucket: str, limit: int) -> bool:
        return bool(await self._acquires((self._prefix + bucket, limit)))

    async def release(self, bucket: str) -> None:
        await self._releases(self._prefix + bucket)
