"""The gateway with tracing on: the same use case, its steps reported as spans.

The composition root picks ``TracedGateway`` over ``Gateway`` only when tracing is on, so
the plain gateway carries no tracing code at all. ``TracedGateway`` hands the use case
traced wrappers of its ports; each wrapped call is a child of whatever span is current, the
request's own (the HTTP middleware's) or the inference's:

    POST /v1/chat/completions            (the request: app.tracing_middleware)
    |- llmserver.auth                    (the key: prefix and role, never the secret)
    |- llmserver.rate_limit              (admission: the RPM window)
    |- llmserver.cache.lookup            (admission: the hot layer; a miss asks the durable one)
    |- llmserver.count_tokens            (admission: the prompt's size)
    |- llmserver.quota.reserve           (admission: the token quota)
    |- llmserver.budget.reserve          (admission: the spend budget, keys with one only)
    |- llmserver.cache.lookup            (the durable layer)
    '- chat demo-tiny-llama              (inference: ``traced_inference``)
       |- llmserver.queue.wait           (a local backend's queue)
       '- POST                           (an http backend's upstream call)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from llmserver.domain.backend_ports import ModelBackends
from llmserver.domain.gateway.holds import Limits
from llmserver.domain.gateway.traced_inference import TracedBackends
from llmserver.domain.gateway.use_case import Gateway
from llmserver.domain.gateway.values import Ledgers, Principal
from llmserver.domain.ports import (
    BATCH_ROWS,
    CachedCompletion,
    CompletionCache,
    HotCache,
    ModelCacheStats,
    RateLimitStore,
    UsageStore,
)
from llmserver.domain.quota import ReservationResult, UsageRecord
from llmserver.domain.ratelimit import RateDecision
from llmserver.domain.registry import ModelRegistry
from llmserver.domain.tracing import Spanned, Tracer

CACHE_LOOKUP = "llmserver.cache.lookup"


class TracedGateway(Gateway):
    def __init__(
        self,
        tracer: Tracer,
        *,
        ledgers: Ledgers,
        limits: Limits,
        cache: CompletionCache,
        hot_cache: HotCache | None,
        registry: ModelRegistry,
        backends: ModelBackends,
        **parts: Any,
    ) -> None:
        """``parts``: the rest of ``Gateway``'s arguments, passed on as they are."""
        super().__init__(
            ledgers=Ledgers(
                TracedUsage(ledgers.quota, tracer),
                TracedUsage(ledgers.budget, tracer, "budget", "nanodollars"),
                TracedUsage(ledgers.model_quota, tracer, "model_quota"),
            ),
            limits=Limits(
                requests=TracedRateLimits(limits.requests, tracer),
                tokens=limits.tokens,
                parallel=limits.parallel,
            ),
            cache=TracedCache(cache, tracer),
            hot_cache=None if hot_cache is None else TracedHotCache(hot_cache, tracer),
            registry=registry,
            backends=TracedBackends(backends, tracer, registry.by_id),
            **parts,
        )
        self._tracer = tracer

    async def authenticate(self, presented: str | None) -> Principal:
        with Spanned(self._tracer, "llmserver.auth") as span:
            principal = await super().authenticate(presented)
            span.set("llmserver.key_prefix", principal.key.prefix)
            span.set("llmserver.key_role", principal.key.role.value)
            return principal


class TracedRateLimits(RateLimitStore):
    def __init__(self, inner: RateLimitStore, tracer: Tracer) -> None:
        self._inner = inner
        self._tracer = tracer

    async def acquire(self, bucket: str, limit: int, now_ms: int) -> RateDecision:
        with Spanned(self._tracer, "llmserver.rate_limit") as span:
            decision = await self._inner.acquire(bucket, limit, now_ms)
            span.set("llmserver.rate_limit.limit", limit)
            span.set("llmserver.rate_limit.remaining", decision.remaining)
            span.set("llmserver.admitted", decision.admitted)
            return decision


class TracedUsage(UsageStore):
    """The quota (or budget) ledger; only the reservation (admission) is a span."""

    def __init__(
        self, inner: UsageStore, tracer: Tracer, ledger: str = "quota", unit: str = "tokens"
    ) -> None:
        self._inner = inner
        self._tracer = tracer
        self._span = f"llmserver.{ledger}.reserve"
        self._amount = f"llmserver.{ledger}.{unit}"

    async def reserve(
        self, key_id: str, period: str, tokens: int, quota: int | None
    ) -> ReservationResult:
        with Spanned(self._tracer, self._span) as span:
            result = await self._inner.reserve(key_id, period, tokens, quota)
            span.set(self._amount, tokens)
            span.set("llmserver.admitted", result.admitted)
            return result

    async def settle(
        self, key_id: str, period: str, reserved: int, used: int, *, cache_hit: bool = False
    ) -> None:
        await self._inner.settle(key_id, period, reserved, used, cache_hit=cache_hit)

    async def release(self, key_id: str, period: str, reserved: int) -> None:
        await self._inner.release(key_id, period, reserved)

    async def get(self, key_id: str, period: str) -> UsageRecord:
        return await self._inner.get(key_id, period)

    async def list(
        self, *, key_id: str | None = None, period: str | None = None
    ) -> Sequence[UsageRecord]:
        return await self._inner.list(key_id=key_id, period=period)


class TracedHotCache(HotCache):
    def __init__(self, inner: HotCache, tracer: Tracer) -> None:
        self._inner = inner
        self._tracer = tracer

    async def get(self, key: str) -> CachedCompletion | None:
        with Spanned(self._tracer, CACHE_LOOKUP, {"llmserver.cache.layer": "hot"}) as span:
            entry = await self._inner.get(key)
            span.set("llmserver.cache.hit", entry is not None)
            return entry

    async def put(self, entry: CachedCompletion, ttl_seconds: int) -> None:
        await self._inner.put(entry, ttl_seconds)

    async def clear(self) -> None:
        await self._inner.clear()


class TracedCache(CompletionCache):
    def __init__(self, inner: CompletionCache, tracer: Tracer) -> None:
        self._inner = inner
        self._tracer = tracer

    async def get(self, key: str, now: datetime) -> CachedCompletion | None:
        with Spanned(self._tracer, CACHE_LOOKUP, {"llmserver.cache.layer": "durable"}) as span:
            entry = await self._inner.get(key, now)
            span.set("llmserver.cache.hit", entry is not None)
            return entry

    async def put(self, entry: CachedCompletion) -> None:
        await self._inner.put(entry)

    async def purge_expired(self, now: datetime, *, batch_rows: int = BATCH_ROWS) -> int:
        return await self._inner.purge_expired(now, batch_rows=batch_rows)

    async def evict(self, max_rows: int, *, batch_rows: int = BATCH_ROWS) -> int:
        return await self._inner.evict(max_rows, batch_rows=batch_rows)

    async def stats(self, now: datetime) -> Sequence[ModelCacheStats]:
        return await self._inner.stats(now)

    async def purge(self, model: str | None = None, *, batch_rows: int = BATCH_ROWS) -> int:
        return await self._inner.purge(model, batch_rows=batch_rows)
