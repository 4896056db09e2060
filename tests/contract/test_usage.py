from __future__ import annotations

import asyncio
import uuid

import pytest

from llmserver.domain.ports import UsageStore
from llmserver.domain.quota import UsageRecord

P = "2026-03"


async def test_reservations_are_admitted_while_they_fit(usage_store: UsageStore) -> None:
    first = await usage_store.reserve("k", P, 60, 100)
    second = await usage_store.reserve("k", P, 40, 100)
    refused = await usage_store.reserve("k", P, 1, 100)

    assert first.admitted
    assert first.record == UsageRecord("k", P, reserved_tokens=60)
    assert second.admitted
    assert second.record.reserved_tokens == 100
    assert not refused.admitted
    assert refused.record == UsageRecord("k", P, reserved_tokens=100)


async def test_a_reservation_larger_than_the_quota_is_refused_on_a_fresh_key(
    usage_store: UsageStore,
) -> None:
    result = await usage_store.reserve("k", P, 101, 100)

    assert not result.admitted
    assert result.record == UsageRecord("k", P)


async def test_no_quota_means_unlimited(usage_store: UsageStore) -> None:
    result = await usage_store.reserve("k", P, 10**12, None)

    assert result.admitted
    assert result.record.reserved_tokens == 10**12


async def test_settle_moves_the_reservation_to_used_and_counts_the_request(
    usage_store: UsageStore,
) -> None:
    await usage_store.reserve("k", P, 50, 100)

    await usage_store.settle("k", P, 50, 30)
    await usage_store.settle("k", P, 0, 0, cache_hit=True)

    assert await usage_store.get("k", P) == UsageRecord(
        "k", P, used_tokens=30, reserved_tokens=0, requests=2, cache_hits=1
    )
    # Released headroom is reusable: 100 - 30 used.
    assert (await usage_store.reserve("k", P, 70, 100)).admitted


async def test_release_returns_the_reservation(usage_store: UsageStore) -> None:
    await usage_store.reserve("k", P, 80, 100)

    await usage_store.release("k", P, 80)
    await usage_store.release("k", P, 5)  # never below zero

    assert await usage_store.get("k", P) == UsageRecord("k", P)


async def test_settle_and_release_on_an_unseen_row_count_from_zero(
    usage_store: UsageStore,
) -> None:
    await usage_store.settle("a", P, 10, 4)
    await usage_store.release("b", P, 10)

    assert await usage_store.get("a", P) == UsageRecord("a", P, used_tokens=4, requests=1)
    assert await usage_store.get("b", P) == UsageRecord("b", P)


async def test_periods_and_keys_are_separate_and_listed_in_order(
    usage_store: UsageStore,
) -> None:
    await usage_store.settle("b", "2026-04", 0, 1)
    await usage_store.settle("a", "2026-04", 0, 2)
    await usage_store.settle("a", "2026-03", 0, 3)

    listed = await usage_store.list()
    assert [(r.period, r.key_id, r.used_tokens) for r in listed] == [
        ("2026-03", "a", 3),
        ("2026-04", "a", 2),
        ("2026-04", "b", 1),
    ]
    assert [r.period for r in await usage_store.list(key_id="a")] == ["2026-03", "2026-04"]
    assert [r.key_id for r in await usage_store.list(period="2026-04")] == ["a", "b"]
    assert await usage_store.get("c", P) == UsageRecord("c", P)


async def test_concurrent_reservations_never_exceed_the_quota(usage_store: UsageStore) -> None:
    quota, tokens, attempts = 100, 7, 50

    results = await asyncio.gather(
        *(usage_store.reserve("k", P, tokens, quota) for _ in range(attempts))
    )

    admitted = sum(r.admitted for r in results)
    assert admitted == quota // tokens
    assert (await usage_store.get("k", P)).reserved_tokens == admitted * tokens


async def test_the_longest_key_id_and_period_round_trip(usage_store: UsageStore) -> None:
    key_id, period = uuid.uuid4().hex, "9999-12"  # the ids KeyAdmin issues; YYYY-MM

    await usage_store.settle(key_id, period, 0, 5)
    flush = getattr(usage_store, "flush", None)
    if flush is not None:  # written behind: the database must take it too
        await flush()

    assert await usage_store.list(key_id=key_id) == [
        UsageRecord(key_id, period, used_tokens=5, requests=1)
    ]


@pytest.mark.parametrize("ledger", ["budget"], indirect=True)
async def test_budget_periods_and_amounts_round_trip_exactly(usage_store: UsageStore) -> None:
    """The budgets' periods (a day, an ISO week) and amounts: the largest budget held and
    the dearest request's worst case on top of it, compared exactly (Redis's Lua compares
    doubles: exact below 2^53)."""
    budget = 10**15  # MAX_BUDGET_USD in nanodollars
    dearest = 2 * (2**31 - 1) * 10**6  # 2^31 - 1 tokens of each kind at $1,000 per million
    for period in ("9999-12-31", "2026-W53"):
        assert (await usage_store.reserve("k", period, budget - 1, budget)).admitted
        assert not (await usage_store.reserve("k", period, dearest, budget)).admitted
        assert (await usage_store.reserve("k", period, 1, budget)).admitted
        assert not (await usage_store.reserve("k", period, 1, budget)).admitted
        await usage_store.settle("k", period, budget, budget - 3)
        assert (await usage_store.reserve("k", period, 3, budget)).admitted
        await usage_store.release("k", period, 3)
    flush = getattr(usage_store, "flush", None)
    if flush is not None:
        await flush()

    assert await usage_store.list(key_id="k") == [
        UsageRecord("k", "2026-W53", used_tokens=budget - 3, requests=1),
        UsageRecord("k", "9999-12-31", used_tokens=budget - 3, requests=1),
    ]
