from __future__ import annotations

from collections import deque

from llmserver.domain.ratelimit import WINDOW_MS, RateDecision, decide


class MemoryRateLimitStore:
    """Per-process sliding-window log. Holds at most ``limit`` timestamps per bucket."""

    def __init__(self) -> None:
        self._log: dict[str, deque[int]] = {}

    async def acquire(self, bucket: str, limit: int, now_ms: int) -> RateDecision:
        entries = self._log.setdefault(bucket, deque())
        while entries and entries[0] <= now_ms - WINDOW_MS:
            entries.popleft()
        decision = decide(entries, now_ms, limit)
        if decision.admitted:
            entries.append(now_ms)
        return decision
