"""Requests-per-minute limiting: a sliding-window log.

Why a log and not GCRA: the promise is "never more than N requests in any 60-second
window, whatever the arrival pattern". GCRA with a burst of N admits N at once and then
one more every 60/N s, so a window can hold more than N; GCRA without burst refuses
bursts entirely. The log admits a request at ``t`` iff fewer than N admitted requests lie
in ``(t - 60, t]``: exactly N in any window, bursts up to N allowed, and the retry-after
is exact (the moment the oldest admitted request leaves the window). Its state is at most
N timestamps per key, which stays small for per-minute limits.

The pure decision lives here; stores keep the timestamps (in memory, or in a Redis sorted
set through a Lua script that implements the same rule atomically).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WINDOW_MS = 60_000
"""Time is counted in integer milliseconds so that retry-after arithmetic is exact."""


# Not frozen: built on every request's path (see ``RequestLog``).
@dataclass(slots=True)
class RateDecision:
    admitted: bool
    limit: int
    remaining: int
    retry_after_ms: int
    """Milliseconds until a request would be admitted (0 when admitted)."""
    reset_after_ms: int
    """Milliseconds until the window has room again for a full burst."""

    @property
    def retry_after(self) -> float:
        return self.retry_after_ms / 1000


def decide_window(window: Sequence[int], now_ms: int, limit: int) -> RateDecision:
    """Decide on a request at ``now_ms`` given the key's admitted timestamps inside the
    window ``(now - 60 s, now]``, oldest first (the store expires the older ones).

    Constant time when the request is admitted, which is what keeps a store's per-request
    cost flat for large limits (a 10 000 RPM key holds up to 10 000 timestamps).
    """
    if limit < 1:
        raise ValueError("an RPM limit admits at least one request")
    count = len(window)
    if count < limit:
        newest = max(window[-1], now_ms) if count else now_ms
        # Positional: keywords cost a dictionary per call, on every admitted request.
        return RateDecision(True, limit, limit - count - 1, 0, newest + WINDOW_MS - now_ms)
    # Admissible once all but limit-1 of the window's requests have expired.
    blocker = window[count - limit]
    return RateDecision(
        admitted=False,
        limit=limit,
        remaining=0,
        retry_after_ms=blocker + WINDOW_MS - now_ms,
        reset_after_ms=window[-1] + WINDOW_MS - now_ms,
    )
