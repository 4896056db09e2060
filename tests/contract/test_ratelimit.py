from __future__ import annotations

import random

from llmserver.domain.ports import RateLimitStore
from llmserver.domain.ratelimit import WINDOW_MS, RateDecision, decide_window

T = 1_780_000_000_000
"""A realistic epoch in milliseconds (large enough to catch float rounding)."""


async def test_admits_the_limit_then_refuses_with_the_exact_retry_after(
    rate_limit_store: RateLimitStore,
) -> None:
    admitted = [await rate_limit_store.acquire("b", 3, T + dt) for dt in (0, 1_000, 2_000)]
    refused = await rate_limit_store.acquire("b", 3, T + 3_000)

    assert [d.remaining for d in admitted] == [2, 1, 0]
    assert all(d.admitted and d.retry_after_ms == 0 for d in admitted)
    assert refused == RateDecision(
        admitted=False, limit=3, remaining=0, retry_after_ms=57_000, reset_after_ms=59_000
    )


async def test_a_request_is_admitted_exactly_when_the_oldest_leaves_the_window(
    rate_limit_store: RateLimitStore,
) -> None:
    for dt in (0, 10, 20):
        await rate_limit_store.acquire("b", 3, T + dt)

    assert not (await rate_limit_store.acquire("b", 3, T + WINDOW_MS - 1)).admitted
    assert (await rate_limit_store.acquire("b", 3, T + WINDOW_MS)).admitted
    assert not (await rate_limit_store.acquire("b", 3, T + WINDOW_MS + 9)).admitted


async def test_requests_in_the_same_millisecond_each_count(
    rate_limit_store: RateLimitStore,
) -> None:
    decisions = [await rate_limit_store.acquire("b", 5, T) for _ in range(6)]

    assert [d.admitted for d in decisions] == [True] * 5 + [False]


async def test_buckets_are_independent(rate_limit_store: RateLimitStore) -> None:
    assert (await rate_limit_store.acquire("a", 1, T)).admitted
    assert (await rate_limit_store.acquire("b", 1, T)).admitted
    assert not (await rate_limit_store.acquire("a", 1, T + 1)).admitted


async def test_every_decision_matches_the_domain_rule(rate_limit_store: RateLimitStore) -> None:
    """Replays a random arrival pattern and checks each decision against ``decide_window``."""
    rng = random.Random(4)
    admitted: list[int] = []
    now = T
    for _ in range(300):
        now += rng.choice((0, 1, 50, 400, 2_000, 9_000, 30_000))
        expected = decide_window([t for t in admitted if t > now - WINDOW_MS], now, 7)
        assert await rate_limit_store.acquire("b", 7, now) == expected
        if expected.admitted:
            admitted.append(now)
    # No 60 s window ever held more than the limit.
    assert all(
        sum(1 for t in admitted if start - WINDOW_MS < t <= start) <= 7 for start in admitted
    )
