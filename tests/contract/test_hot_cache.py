from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from llmserver.domain.inference import Choice, FinishReason, TokenLogprob, TopLogprob
from llmserver.domain.ports import CachedCompletion, HotCache

NOW = datetime(2026, 3, 14, 12, 0, 0, 123456, tzinfo=UTC)
ENTRY = CachedCompletion(
    key="k1",
    model="tiny",
    text="Hello ✓",
    prompt_tokens=3,
    completion_tokens=2,
    finish_reason=FinishReason.STOP,
    created_at=NOW,
    expires_at=NOW + timedelta(days=1),
    hit_count=4,
)


async def test_an_entry_round_trips(hot_cache: HotCache) -> None:
    await hot_cache.put(ENTRY, ttl_seconds=60)

    got = await hot_cache.get("k1")
    assert got == ENTRY
    assert type(got.finish_reason) is FinishReason  # equality takes its string too
    assert await hot_cache.get("k2") is None


async def test_log_probabilities_and_more_choices_round_trip(hot_cache: HotCache) -> None:
    logprobs = (TokenLogprob("Hel", -0.5, (TopLogprob("Hel", -0.5),), None),)
    more = (Choice("x", FinishReason.LENGTH, ()), Choice("y", FinishReason.STOP, logprobs))
    full = replace(ENTRY, key="k3", logprobs=logprobs, more=more)
    await hot_cache.put(full, ttl_seconds=60)

    got = await hot_cache.get("k3")
    assert got == full
    assert type(got.more[0].finish_reason) is FinishReason


async def test_an_entry_expires_after_its_ttl(hot_cache: HotCache) -> None:
    await hot_cache.put(ENTRY, ttl_seconds=1)

    await asyncio.sleep(1.1)

    assert await hot_cache.get("k1") is None


async def test_clear_forgets_every_entry(hot_cache: HotCache) -> None:
    # More entries than one Redis clear batch, so the batching is exercised.
    keys = [f"k{n}" for n in range(1_203)]
    for key in keys:
        await hot_cache.put(replace(ENTRY, key=key), ttl_seconds=60)

    await hot_cache.clear()

    assert [key for key in keys if await hot_cache.get(key) is not None] == []
    await hot_cache.put(ENTRY, ttl_seconds=60)  # usable after a clear
    assert await hot_cache.get("k1") == ENTRY
