from __future__ import annotations

from bisect import insort
from collections import deque

from llmserver.domain.ports import RateLimitStore
from llmserver.domain.ratelimit import WINDOW_MS, RateDecision, decide_window


class MemoryRateLimitStore(RateLimitStore):
    """Per-process sliding-window log. Holds at most ``limit`` timestamps per bucket, kept
    sorted so that expiring the old ones and deciding cost O(1) per request."""

    def __init__(self) -> None:
        self._log: dict[str, deque[int]] = {}

    async def acquire(self, bucket: str, limit: int, now_ms: int) -> RateDecision:
        entries = self._log.get(bucket)
        if entries is None:  # not setdefault: its default would be a new deque every call
            entries = self._log[bucket] = deque()
        while entries and entries[0] <= now_ms - WINDOW_MS:
            entries.popleft()
        decision = decide_window(entries, now_ms, limit)
        if decision.admitted:
            if not entries or entries[-1] <= now_ms:
                entries.append(now_ms)
            else:  # the wall clock stepped back: keep the log sorted
                insort(entries, now_ms)
        return decision
