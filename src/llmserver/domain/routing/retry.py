"""Which failures of a deployment another attempt may cure, and how long to wait first.

Only failures before the first byte of an answer reached the client count here: after
it, a retry would repeat text the client already has, so the adapter never asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

from llmserver.domain.errors import (
    GatewayError,
    GenerationTimeout,
    Overloaded,
    Unavailable,
    UpstreamError,
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one failed attempt says about the deployment and about trying again."""

    retry: bool
    """Another deployment (or the same, later) may answer: a connect error, a timeout, a
    429, a 5xx, a full queue. Not for a request the upstream found invalid: any other
    deployment would refuse it too."""
    unhealthy: bool
    """Counts towards the deployment's circuit breaker (a 429 or a full queue does not:
    the deployment works, it is busy)."""
    retry_after_s: float | None = None
    """How long the deployment asked to be left alone (``Retry-After``)."""


def judge(error: BaseException) -> Verdict:
    if isinstance(error, Overloaded):
        return Verdict(retry=True, unhealthy=False, retry_after_s=error.retry_after)
    if isinstance(error, GenerationTimeout | Unavailable):
        return Verdict(retry=True, unhealthy=True)
    if isinstance(error, UpstreamError):
        # No status: it was never reached, dropped the connection or answered garbage.
        status = error.upstream_status
        broken = status is None or status >= 500 or status in (401, 403)
        return Verdict(retry=True, unhealthy=broken)
    if isinstance(error, GatewayError):
        return Verdict(retry=False, unhealthy=False)
    return Verdict(retry=True, unhealthy=True)  # a backend's bug: try elsewhere, note it


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 3
    """Attempts per client request on one model's deployments (fallbacks have their own)."""
    backoff_s: float = 0.05
    """The wait before the second attempt; each later one waits twice the one before."""
    max_wait_s: float = 5.0
    """The longest a request waits between two attempts: a backoff is capped at it, and
    a longer ``Retry-After`` sends the request to the fallbacks rather than wait."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.backoff_s < 0 or self.max_wait_s < 0:
            raise ValueError("a retry policy makes >= 1 attempt and waits >= 0 s")

    def backoff_before(self, attempt: int) -> float:
        """Seconds to wait before attempt number ``attempt`` (2, 3, ...) goes to a
        deployment this request already tried: exponential, capped at ``max_wait_s``."""
        if attempt < 2:
            return 0.0
        return min(self.max_wait_s, self.backoff_s * 2.0 ** (attempt - 2))

    def may_wait(self, wait_s: float | None) -> bool:
        """Whether a request waits ``wait_s`` for a deployment's ``Retry-After`` to pass
        (when no other is usable) rather than give up on this model: only a known wait
        within ``max_wait_s``."""
        return wait_s is not None and wait_s <= self.max_wait_s


def parse_retry_after(value: str, now: datetime) -> float | None:
    """A ``Retry-After`` header's seconds from ``now``: delay-seconds or an HTTP-date
    (RFC 9110 10.2.3); ``None`` when it is neither."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())
