"""The rate limiter that survives a Redis outage: the configured policy decides."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

import redis.asyncio as aioredis
import structlog

from llmserver.domain.errors import Unavailable
from llmserver.domain.ports import RateLimitStore
from llmserver.domain.ratelimit import RateDecision

log = structlog.get_logger(__name__)


class FailurePolicy(StrEnum):
    FAIL_OPEN = "fail_open"
    """Admit the request: availability over the limit while Redis is down."""
    FAIL_CLOSED = "fail_closed"
    """Refuse with 503 ``Unavailable``: the limit over availability."""


class GuardedRateLimitStore(RateLimitStore):
    """Applies the configured policy when the Redis limiter cannot be reached.

    Every failure is logged and reported to ``on_error`` (the metrics count it there); the
    request is then admitted (fail_open) or refused with ``Unavailable`` (fail_closed).
    """

    def __init__(
        self,
        inner: RateLimitStore,
        policy: FailurePolicy | str,
        *,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self._inner = inner
        self.policy = FailurePolicy(policy)
        self._on_error = on_error

    async def acquire(self, bucket: str, limit: int, now_ms: int) -> RateDecision:
        try:
            return await self._inner.acquire(bucket, limit, now_ms)
        except (aioredis.RedisError, OSError) as exc:
            if self._on_error is not None:
                self._on_error("limiter")
            log.warning("rate_limiter_unavailable", policy=self.policy.value, error=repr(exc))
            if self.policy is FailurePolicy.FAIL_CLOSED:
                raise Unavailable("The rate limiter is unavailable; try again shortly.") from exc
            # Nothing is known about the window: admit without claiming any headroom.
            return RateDecision(
                admitted=True, limit=limit, remaining=0, retry_after_ms=0, reset_after_ms=0
            )
