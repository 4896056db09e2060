"""Monthly quota: UTC calendar periods; reserve -> settle | release never overspends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

from llmserver.adapters.memory import MemoryUsageStore
from llmserver.domain.budget import window_reset_at, window_start
from llmserver.domain.errors import QuotaExceeded
from llmserver.domain.quota import (
    Reservation,
    UsageRecord,
    fits,
    period_of,
    settle_amount,
)

from .fakes import run_now
from .world import World, ask, origin

# -- periods ------------------------------------------------------------------------------


PARIS = timezone(timedelta(hours=1))
NEW_YORK = timezone(timedelta(hours=-5))


def utc(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    microsecond: int = 0,
) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


@pytest.mark.parametrize(
    ("instant", "period", "reset"),
    [
        (utc(2026, 3, 31, 23, 59, 59, 999999), "2026-03", utc(2026, 4, 1)),
        (utc(2026, 4, 1, 0, 0, 0), "2026-04", utc(2026, 5, 1)),
        (utc(2026, 12, 31, 23, 59, 59), "2026-12", utc(2027, 1, 1)),
        (utc(2027, 1, 1, 0, 0, 0), "2027-01", utc(2027, 2, 1)),
        (utc(2028, 2, 29, 12), "2028-02", utc(2028, 3, 1)),
        # 00:30 on 1 January in Paris is still December in UTC...
        (datetime(2027, 1, 1, 0, 30, tzinfo=PARIS), "2026-12", utc(2027, 1, 1)),
        # ... and 20:00 on 31 December in New York is already January.
        (datetime(2026, 12, 31, 20, 0, tzinfo=NEW_YORK), "2027-01", utc(2027, 2, 1)),
    ],
)
def test_periods_are_utc_calendar_months(instant: datetime, period: str, reset: datetime) -> None:
    assert period_of(instant) == period
    assert window_reset_at(period) == reset


def test_a_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        period_of(datetime(2026, 1, 1))  # noqa: DTZ001


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 2),  # noqa: DTZ001
        max_value=datetime(9998, 12, 1),  # noqa: DTZ001
        timezones=st.builds(timezone, st.timedeltas(timedelta(hours=-23), timedelta(hours=23))),
    )
)
def test_every_instant_lies_in_its_period(instant: datetime) -> None:
    period = period_of(instant)
    assert window_start(period) <= instant < window_reset_at(period)
    assert period_of(window_reset_at(period)) != period
    assert period_of(window_reset_at(period) - timedelta(microseconds=1)) == period


def test_settled_usage_never_exceeds_the_reservation() -> None:
    assert settle_amount(10, 7) == 7
    assert settle_amount(10, 12) == 10
    assert settle_amount(10, -1) == 0


def test_unlimited_keys_always_fit() -> None:
    assert fits(UsageRecord("k", "2026-01", used_tokens=10**12), 10**9, None)
    assert fits(UsageRecord("k", "2026-01", used_tokens=5, reserved_tokens=5), 10, 20)
    assert not fits(UsageRecord("k", "2026-01", used_tokens=5, reserved_tokens=5), 11, 20)


# -- the store under arbitrary interleavings --------------------------------------------


class QuotaMachine(RuleBasedStateMachine):
    """Reservations made, settled and released in any order, on two keys and periods."""

    reservations = Bundle("reservations")

    @initialize(quota=st.integers(0, 200))
    def start(self, quota: int) -> None:
        self.store = MemoryUsageStore()
        self.quota = quota
        self.used: dict[tuple[str, str], int] = {}
        self.held: dict[tuple[str, str], int] = {}

    @rule(
        target=reservations,
        key=st.sampled_from(["a", "b"]),
        period=st.sampled_from(["2026-01", "2026-02"]),
        tokens=st.integers(0, 120),
    )
    def reserve(self, key: str, period: str, tokens: int) -> Reservation | None:
        slot = (key, period)
        expected = self.used.get(slot, 0) + self.held.get(slot, 0) + tokens <= self.quota
        result = run_now(self.store.reserve(key, period, tokens, self.quota))
        assert result.admitted is expected
        if not result.admitted:
            assert result.record.remaining(self.quota) < tokens
            return None
        self.held[slot] = self.held.get(slot, 0) + tokens
        return Reservation(key, period, tokens)

    @rule(reservation=consumes(reservations), fraction=st.floats(0, 1.5), hit=st.booleans())
    def settle(self, reservation: Reservation | None, fraction: float, hit: bool) -> None:
        if reservation is None:
            return
        used = settle_amount(reservation.tokens, int(reservation.tokens * fraction))
        slot = (reservation.key_id, reservation.period)
        run_now(self.store.settle(*slot, reservation.tokens, used, cache_hit=hit))
        self.held[slot] -= reservation.tokens
        self.used[slot] = self.used.get(slot, 0) + used

    @rule(reservation=consumes(reservations))
    def release(self, reservation: Reservation | None) -> None:
        if reservation is None:
            return
        slot = (reservation.key_id, reservation.period)
        run_now(self.store.release(*slot, reservation.tokens))
        self.held[slot] -= reservation.tokens

    @invariant()
    def never_overspent(self) -> None:
        if not hasattr(self, "store"):
            return
        for record in run_now(self.store.list()):
            slot = (record.key_id, record.period)
            assert record.used_tokens + record.reserved_tokens <= self.quota
            assert record.used_tokens == self.used.get(slot, 0)
            assert record.reserved_tokens == self.held.get(slot, 0)


QuotaMachine.TestCase.settings = settings(stateful_step_count=20)
TestQuotaStore = QuotaMachine.TestCase


# -- the gateway under concurrency -----------------------------------------------------

outcome_kinds = st.sampled_from(["ok", "fail", "cancel", "short"])


@given(
    quota=st.integers(0, 80),
    requests=st.lists(st.tuples(st.integers(1, 12), outcome_kinds), min_size=1, max_size=12),
)
def test_concurrent_requests_never_spend_past_the_quota(
    quota: int, requests: list[tuple[int, str]]
) -> None:
    asyncio.run(_spend_concurrently(quota, requests))


async def _spend_concurrently(quota: int, requests: list[tuple[int, str]]) -> None:
    world = World()
    world.backend.gate = asyncio.Event()
    world.backend.error = RuntimeError("boom")
    world.backend.fails = lambda prompt: "fail" in str(prompt)
    principal = await world.principal(quota_tokens=quota)

    async def one(index: int, max_tokens: int, kind: str) -> None:
        request = ask(f"{kind} request {index}", max_tokens=max_tokens, use_cache=False)
        if kind == "short":
            session = await world.gateway.open_stream(principal, request, origin(f"r{index}"))
            await anext(session.events)
            await session.events.aclose()  # type: ignore[attr-defined]
        else:
            await world.gateway.complete(principal, request, origin(f"r{index}"))

    tasks = [asyncio.create_task(one(i, n, kind)) for i, (n, kind) in enumerate(requests)]
    for _ in range(5):
        await asyncio.sleep(0)
    usage = await world.usage_of(principal)
    assert usage.used_tokens + usage.reserved_tokens <= quota
    for task, (_, kind) in zip(tasks, requests, strict=True):
        if kind == "cancel":
            task.cancel()
    world.backend.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)

    usage = await world.usage_of(principal)
    assert usage.reserved_tokens == 0
    assert usage.used_tokens <= quota
    assert len(world.logs) == len(requests)
    logged = sum(
        row.prompt_tokens + row.completion_tokens for row in world.logs if row.status in (200, 499)
    )
    assert usage.used_tokens == logged
    for result, (_, kind) in zip(results, requests, strict=True):
        expected = {"fail": RuntimeError, "cancel": asyncio.CancelledError}.get(kind, type(None))
        assert isinstance(result, expected | QuotaExceeded)
