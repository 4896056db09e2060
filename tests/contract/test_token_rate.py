"""The TPM window (``domain.token_rate``) over every ``TokenRateStore``: reserve, settle to
the tokens used, release; exact retry times; every decision the domain rule's."""

from __future__ import annotations

import asyncio
import random

from llmserver.domain.ports import TokenRateStore
from llmserver.domain.ratelimit import WINDOW_MS, RateDecision
from llmserver.domain.token_rate import TokenHold, decide_tokens

T = 1_780_000_000_000
"""A realistic epoch in milliseconds (large enough to catch float rounding)."""


async def _held(store: TokenRateStore, limit: int, at: int) -> int:
    """The tokens the window holds at ``at``, read as what a reservation of 1 leaves."""
    probe = await store.reserve("b", limit, 1, at)
    assert probe.hold is not None, "the probe needs room"
    await store.release(probe.hold)
    return limit - probe.decision.remaining - 1


async def test_admits_up_to_the_limit_then_refuses_with_the_exact_retry_after(
    token_rate_store: TokenRateStore,
) -> None:
    first = await token_rate_store.reserve("b", 1_000, 600, T)
    second = await token_rate_store.reserve("b", 1_000, 400, T + 1_000)
    refused = await token_rate_store.reserve("b", 1_000, 1, T + 2_000)

    assert first.decision == RateDecision(True, 1_000, 400, 0, WINDOW_MS)
    assert second.decision.admitted
    assert second.decision.remaining == 0
    assert refused.hold is None
    # One token fits once the first entry (600) has left: at T + 60 s.
    assert refused.decision == RateDecision(False, 1_000, 0, 58_000, 59_000)


async def test_settling_shrinks_the_entry_to_the_tokens_used(
    token_rate_store: TokenRateStore,
) -> None:
    taken = await token_rate_store.reserve("b", 1_000, 900, T)
    assert taken.hold is not None
    assert not (await token_rate_store.reserve("b", 1_000, 500, T + 1)).decision.admitted

    await token_rate_store.settle(taken.hold, 120)

    assert await _held(token_rate_store, 1_000, T + 2) == 120
    # Settling never grows an entry, and a second settle cannot undo the first.
    await token_rate_store.settle(taken.hold, 5_000)
    assert await _held(token_rate_store, 1_000, T + 3) == 120


async def test_an_entry_settled_to_nothing_holds_nothing_not_even_the_reset(
    token_rate_store: TokenRateStore,
) -> None:
    """A cache hit's entry, charged nothing, is settled to 0: it no longer holds tokens,
    and a refusal's reset is the newest entry that still does, wherever the settled one
    stands (the newest, or between others)."""
    first = await token_rate_store.reserve("b", 100, 60, T)
    middle = await token_rate_store.reserve("b", 100, 20, T + 10)
    newest = await token_rate_store.reserve("b", 100, 10, T + 20)
    assert first.hold is not None
    assert middle.hold is not None
    assert newest.hold is not None
    await token_rate_store.settle(middle.hold, 0)
    await token_rate_store.settle(newest.hold, 0)

    refused = await token_rate_store.reserve("b", 100, 50, T + 30)

    # Only the first entry holds anything (60): 50 more fit once it leaves, at T + 60 s,
    # and that is also when the window is free again.
    assert refused.decision == RateDecision(False, 100, 40, 59_970, 59_970)
    assert await _held(token_rate_store, 100, T + 40) == 60


async def test_a_released_entry_disappears(token_rate_store: TokenRateStore) -> None:
    taken = await token_rate_store.reserve("b", 1_000, 1_000, T)
    assert taken.hold is not None

    await token_rate_store.release(taken.hold)

    assert (await token_rate_store.reserve("b", 1_000, 1_000, T + 1)).decision.admitted


async def test_an_entry_leaves_the_window_after_a_minute_and_closing_it_then_is_harmless(
    token_rate_store: TokenRateStore,
) -> None:
    old = await token_rate_store.reserve("b", 100, 100, T)
    assert not (await token_rate_store.reserve("b", 100, 1, T + WINDOW_MS - 1)).decision.admitted
    fresh = await token_rate_store.reserve("b", 100, 100, T + WINDOW_MS)
    assert old.hold is not None
    assert fresh.decision.admitted

    await token_rate_store.settle(old.hold, 0)
    await token_rate_store.release(old.hold)

    # The fresh entry is untouched by closing the one that left.
    assert not (await token_rate_store.reserve("b", 100, 1, T + WINDOW_MS + 1)).decision.admitted


async def test_a_refusal_finds_its_retry_among_many_small_entries(
    token_rate_store: TokenRateStore,
) -> None:
    for n in range(200):  # 5 tokens each, 10 ms apart
        assert (await token_rate_store.reserve("b", 1_000, 5, T + 10 * n)).decision.admitted

    refused = await token_rate_store.reserve("b", 1_000, 500, T + 2_000)

    # 500 tokens are free once the 100 oldest entries have left: the 100th at T + 990 ms.
    assert refused.decision == RateDecision(False, 1_000, 0, 58_990, 59_990)


async def test_buckets_are_independent(token_rate_store: TokenRateStore) -> None:
    assert (await token_rate_store.reserve("a", 10, 10, T)).decision.admitted
    assert (await token_rate_store.reserve("c", 10, 10, T)).decision.admitted
    assert not (await token_rate_store.reserve("a", 10, 1, T)).decision.admitted


async def test_concurrent_reservations_never_hold_more_than_the_limit(
    token_rate_store: TokenRateStore,
) -> None:
    taken = await asyncio.gather(*(token_rate_store.reserve("b", 1_000, 7, T) for _ in range(300)))

    assert sum(7 for t in taken if t.hold is not None) == 994  # 142 of 7 fit in 1,000


async def test_every_decision_matches_the_domain_rule(token_rate_store: TokenRateStore) -> None:
    """Replays random reservations, settles and releases; checks each decision against
    ``decide_tokens`` over the entries as the test keeps them."""
    rng = random.Random(7)
    limit = 5_000
    entries: dict[str, list[int]] = {}
    holds: list[TokenHold] = []
    now = T
    for _ in range(400):
        now += rng.choice((0, 1, 50, 400, 2_000, 9_000, 30_000))
        for entry in [e for e, (at, _) in entries.items() if at <= now - WINDOW_MS]:
            del entries[entry]
        action = rng.random()
        if action < 0.6 or not holds:
            tokens = rng.randint(1, 2_000)
            window = sorted((at, size) for at, size in entries.values())
            expected = decide_tokens(window, sum(s for _, s in window), now, limit, tokens)
            taken = await token_rate_store.reserve("b", limit, tokens, now)
            assert taken.decision == expected
            if taken.hold is not None:
                holds.append(taken.hold)
                entries[taken.hold.entry] = [now, tokens]
        else:
            hold = holds.pop(rng.randrange(len(holds)))
            if action < 0.85:
                used = rng.randint(0, hold.tokens)
                await token_rate_store.settle(hold, used)
                if hold.entry in entries:
                    entries[hold.entry][1] = min(entries[hold.entry][1], used)
            else:
                await token_rate_store.release(hold)
                entries.pop(hold.entry, None)
        assert sum(size for _, size in entries.values()) <= limit
