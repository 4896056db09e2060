"""The RPM limiter: never more than N admitted in any 60 s window, exact retry-after."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmserver.adapters.memory import MemoryRateLimitStore
from llmserver.domain.ratelimit import WINDOW_MS, RateDecision, decide_window

from .fakes import run_now

limits = st.integers(min_value=1, max_value=12)
# Gaps between arrivals in ms: bursts (0), near-window gaps and long pauses all appear.
gaps = st.lists(
    st.one_of(
        st.integers(0, 10),
        st.integers(0, 2 * WINDOW_MS),
        st.sampled_from([WINDOW_MS - 1, WINDOW_MS, WINDOW_MS + 1]),
    ),
    min_size=1,
    max_size=80,
)


def arrivals(start: int, steps: Sequence[int]) -> list[int]:
    times, now = [], start
    for step in steps:
        now += step
        times.append(now)
    return times


def decide(admitted: Sequence[int], now: int, limit: int) -> RateDecision:
    """The domain rule on every admitted arrival so far, oldest first: a store keeps only
    those inside the window."""
    return decide_window([t for t in admitted if t > now - WINDOW_MS], now, limit)


def run_pure(times: Sequence[int], limit: int) -> list[tuple[int, RateDecision]]:
    admitted: list[int] = []
    decisions = []
    for now in times:
        decision = decide(admitted, now, limit)
        if decision.admitted:
            admitted.append(now)
        decisions.append((now, decision))
    return decisions


def run_store(times: Sequence[int], limit: int) -> list[tuple[int, RateDecision]]:
    store = MemoryRateLimitStore()
    return [(now, run_now(store.acquire("k", limit, now))) for now in times]


def assert_window_bound(decisions: Sequence[tuple[int, RateDecision]], limit: int) -> None:
    admitted = [now for now, d in decisions if d.admitted]
    # The densest windows start at an admitted request; check every one of them.
    for i, start in enumerate(admitted):
        in_window = [t for t in admitted[i:] if t < start + WINDOW_MS]
        assert len(in_window) <= limit


@given(limit=limits, start=st.integers(0, 10**12), steps=gaps)
def test_never_more_than_the_limit_in_any_window(limit: int, start: int, steps: list[int]) -> None:
    times = arrivals(start, steps)
    pure = run_pure(times, limit)
    assert_window_bound(pure, limit)
    # The memory store implements the same rule: same decisions on the same arrivals.
    assert run_store(times, limit) == pure


@given(limit=limits, start=st.integers(0, 10**12), steps=gaps)
def test_a_refusal_names_the_first_instant_that_would_be_admitted(
    limit: int, start: int, steps: list[int]
) -> None:
    admitted: list[int] = []
    for now in arrivals(start, steps):
        decision = decide(admitted, now, limit)
        if decision.admitted:
            in_window = sum(t > now - WINDOW_MS for t in admitted)
            assert (decision.retry_after_ms, decision.remaining) == (0, limit - 1 - in_window)
            admitted.append(now)
            continue
        assert decision.retry_after_ms > 0
        assert decision.retry_after == decision.retry_after_ms / 1000
        assert decide(admitted, now + decision.retry_after_ms, limit).admitted
        assert not decide(admitted, now + decision.retry_after_ms - 1, limit).admitted


@given(limit=st.integers(1, 60), start=st.integers(0, 10**12), minutes=st.integers(1, 4))
def test_evenly_spaced_requests_are_all_admitted(limit: int, start: int, minutes: int) -> None:
    # 60/N seconds apart, rounded up to whole ms so that N fit exactly in a window.
    spacing = -(-WINDOW_MS // limit)
    times = [start + i * spacing for i in range(limit * minutes)]
    decisions = run_store(times, limit)
    assert all(d.admitted for _, d in decisions)
    # One more inside the last window is one too many.
    assert not decide(times[-limit:], times[-1] + 1, limit).admitted


@given(limit=limits, start=st.integers(0, 10**12))
def test_a_burst_admits_exactly_the_limit_then_waits_a_full_window(limit: int, start: int) -> None:
    decisions = run_store([start] * (limit + 3), limit)
    assert [d.admitted for _, d in decisions] == [True] * limit + [False] * 3
    assert {d.retry_after_ms for _, d in decisions[limit:]} == {WINDOW_MS}


def test_admission_reports_remaining_and_reset() -> None:
    first = decide([], 1_000, 3)
    assert (first.admitted, first.remaining, first.reset_after_ms) == (True, 2, WINDOW_MS)
    full = decide([1_000, 2_000, 3_000], 4_000, 3)
    assert (full.admitted, full.retry_after_ms, full.reset_after_ms) == (False, 57_000, 59_000)


def test_a_request_exactly_one_window_later_is_admitted() -> None:
    assert decide([0], WINDOW_MS, 1).admitted
    assert not decide([0], WINDOW_MS - 1, 1).admitted


def test_a_limit_below_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least one"):
        decide([], 0, 0)


async def test_buckets_are_independent() -> None:
    store = MemoryRateLimitStore()
    assert (await store.acquire("a", 1, 0)).admitted
    assert not (await store.acquire("a", 1, 1)).admitted
    assert (await store.acquire("b", 1, 1)).admitted
