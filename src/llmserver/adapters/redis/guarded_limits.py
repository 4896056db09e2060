"""The TPM and parallel stores when Redis cannot be reached: the configured policy
decides, as for the RPM limiter (``guarded_limiter``).

``fail_open`` admits without a hold in Redis (nothing is known of the window or of the
requests in flight); ``fail_closed`` refuses with 503 ``Unavailable``. A settle or release
that fails is not an error of the request: a TPM entry leaves the window within a minute
all the same, and a parallel slot's release is retried with the next call that reaches
Redis (after an outage longer than the lease, the other replicas have dropped this one's
slots already)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import structlog

from llmserver.adapters.redis.guarded_limiter import FailurePolicy
from llmserver.adapters.redis.lease import REDIS_ERRORS
from llmserver.domain.errors import Unavailable
from llmserver.domain.ports import ParallelStore, TokenRateStore
from llmserver.domain.ratelimit import WINDOW_MS, RateDecision
from llmserver.domain.token_rate import TokenHold, TokenReservation

log = structlog.get_logger(__name__)


class _Guard:
    def __init__(
        self, component: str, policy: FailurePolicy | str, on_error: Callable[[str], None] | None
    ) -> None:
        self._component = component
        self.policy = FailurePolicy(policy)
        self._on_error = on_error

    def failed(self, exc: BaseException, *, refuse: bool) -> None:
        """Count and log a failure; raise ``Unavailable`` if it refuses the request."""
        if self._on_error is not None:
            self._on_error(self._component)
        log.warning(f"{self._component}_unavailable", policy=self.policy.value, error=repr(exc))
        if refuse and self.policy is FailurePolicy.FAIL_CLOSED:
            raise Unavailable(f"The {self._component} store is unavailable; try again shortly.")


class GuardedTokenRateStore(TokenRateStore):
    def __init__(
        self,
        inner: TokenRateStore,
        policy: FailurePolicy | str,
        *,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self._inner = inner
        self._guard = _Guard("tpm_limiter", policy, on_error)

    async def reserve(self, bucket: str, limit: int, tokens: int, now_ms: int) -> TokenReservation:
        try:
            return await self._inner.reserve(bucket, limit, tokens, now_ms)
        except REDIS_ERRORS as exc:
            self._guard.failed(exc, refuse=True)
        # Admitted without a hold, claiming no headroom.
        return TokenReservation(RateDecision(True, limit, 0, 0, WINDOW_MS), None)

    async def settle(self, hold: TokenHold, used: int) -> None:
        try:
            await self._inner.settle(hold, used)
        except REDIS_ERRORS as exc:
            self._guard.failed(exc, refuse=False)

    async def release(self, hold: TokenHold) -> None:
        try:
            await self._inner.release(hold)
        except REDIS_ERRORS as exc:
            self._guard.failed(exc, refuse=False)


class GuardedParallelStore(ParallelStore):
    def __init__(
        self,
        inner: ParallelStore,
        policy: FailurePolicy | str,
        *,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self._inner = inner
        self._guard = _Guard("parallel_limiter", policy, on_error)
        self._unheld: Counter[str] = Counter()
        """Slots ``fail_open`` admitted without a hold in Redis, per bucket."""
        self._owed: Counter[str] = Counter()
        """Releases that failed, to retry."""

    async def acquire(self, bucket: str, limit: int) -> bool:
        try:
            await self._repay()
            return await self._inner.acquire(bucket, limit)
        except REDIS_ERRORS as exc:
            self._guard.failed(exc, refuse=True)
        self._unheld[bucket] += 1
        return True

    async def release(self, bucket: str) -> None:
        if self._unheld[bucket] > 0:
            self._unheld[bucket] -= 1
            return
        self._owed[bucket] += 1
        try:
            await self._repay()
        except REDIS_ERRORS as exc:
            self._guard.failed(exc, refuse=False)

    async def _repay(self) -> None:
        if not self._owed:
            return
        for bucket in list(self._owed):
            # Taken off before the await, so that two calls never repay one release twice.
            while self._owed[bucket] > 0:
                self._owed[bucket] -= 1
                try:
                    await self._inner.release(bucket)
                except BaseException:
                    self._owed[bucket] += 1
                    raise
            if not self._owed[bucket]:
                del self._owed[bucket]
