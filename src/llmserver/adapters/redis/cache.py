from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast

import msgspec
import redis.asyncio as aioredis
import structlog

from llmserver.adapters.redis.pipe import RedisPipe
from llmserver.adapters.redis.turn_batch import TurnBatch
from llmserver.domain.inference import Choice, Logprobs
from llmserver.domain.ports import CachedCompletion, HotCache

log = structlog.get_logger(__name__)

CLEAR_BATCH = 500
"""Keys one SCAN step asks for and one UNLINK removes, when the hot cache is cleared."""


class _Entry(msgspec.Struct, frozen=True, array_like=True, omit_defaults=True):
    """The stored form: a compact msgpack array (field order is the format). The trailing
    fields are left out at their defaults, so an ordinary answer is stored as before."""

    key: str
    model: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    created_at: datetime
    expires_at: datetime
    hit_count: int
    logprobs: Logprobs | None = None
    more: tuple[Choice, ...] = ()


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_Entry).decode


class RedisHotCache(HotCache):
    """``HotCache`` in Redis, shared by every gateway process.

    A cache in front of a cache must never fail a request: any Redis error (or an
    undecodable value) is logged, reported to ``on_error`` (the metrics count it there),
    and answered as a miss.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "llmserver:hot:",
        on_error: Callable[[str], None] | None = None,
        pipe: RedisPipe,
    ) -> None:
        """``pipe`` carries the batched lookups, ``client`` the writes."""
        self._client = client
        self._pipe = pipe
        self._prefix = prefix
        self._on_error = on_error
        # The lookups of one event-loop turn are one MGET (see ``turn_batch``).
        self._reads: TurnBatch[str, Any] = TurnBatch(self._read_all)

    async def _read_all(self, keys: Sequence[str]) -> list[Any]:
        return await self._pipe.mget(keys)

    def _failed(self, operation: str, exc: Exception) -> None:
        if self._on_error is not None:
            self._on_error("hot_cache")
        log.warning("hot_cache_error", operation=operation, error=repr(exc))

    async def get(self, key: str) -> CachedCompletion | None:
        try:
            raw = await self._reads(self._prefix + key)
            if raw is None:
                return None
            # Values are msgpack bytes: the client must not decode responses. A value this
            # version cannot read (a finish reason it does not know) is a miss too.
            return msgspec.convert(
                _decode(cast("bytes", raw)), CachedCompletion, from_attributes=True
            )
        except (aioredis.RedisError, OSError, msgspec.DecodeError) as exc:
            self._failed("get", exc)
            return None

    async def put(self, entry: CachedCompletion, ttl_seconds: int) -> None:
        value = _encode(msgspec.convert(entry, _Entry, from_attributes=True))
        try:
            await self._client.set(self._prefix + entry.key, value, ex=ttl_seconds)
        except (aioredis.RedisError, OSError) as exc:
            self._failed("put", exc)

    async def clear(self) -> None:
        # SCAN, not KEYS: it never blocks Redis for the whole keyspace. Unlike a lookup, a
        # clear that fails raises: the admin who asked must hear that it did not happen.
        batch: list[str | bytes] = []
        async for key in self._client.scan_iter(match=f"{self._prefix}*", count=CLEAR_BATCH):
            batch.append(key)
            if len(batch) == CLEAR_BATCH:
                await self._client.unlink(*batch)
                batch = []
        if batch:
            await self._client.unlink(*batch)
