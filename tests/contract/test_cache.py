from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from llmserver.domain.inference import Choice, FinishReason, TokenLogprob, TopLogprob
from llmserver.domain.ports import CachedCompletion, CompletionCache, RowsRejected
from llmserver.domain.registry import MODEL_ID_MAX_CHARS
from llmserver.domain.tools import ToolCall

NOW = datetime(2026, 3, 14, 12, 0, 0, 123456, tzinfo=UTC)


def entry(
    key: str = "k1", ttl: timedelta = timedelta(hours=1), **changes: object
) -> CachedCompletion:
    base = CachedCompletion(
        key=key,
        model="tiny",
        text="Hello, wörld ✓",
        prompt_tokens=12,
        completion_tokens=5,
        finish_reason=FinishReason.LENGTH,
        created_at=NOW,
        expires_at=NOW + ttl,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


async def test_a_live_entry_round_trips_and_counts_hits(completion_cache: CompletionCache) -> None:
    await completion_cache.put(entry())

    first = await completion_cache.get("k1", NOW)
    second = await completion_cache.get("k1", NOW + timedelta(minutes=59))

    assert first == replace(entry(), hit_count=1)
    assert type(first.finish_reason) is FinishReason  # equality takes its string too
    assert second is not None
    assert second.hit_count == 2
    assert first.completion().text == "Hello, wörld ✓"


LOGPROBS = (
    TokenLogprob("Hel", -0.25, (TopLogprob("Hel", -0.25), TopLogprob("\ufffd", -9999.0, (226,)))),
    TokenLogprob("\ufffd", -1.5, (), (226, 156)),
)
CHOICES = (
    Choice("Bye ✓", FinishReason.STOP, ()),
    Choice("", FinishReason.LENGTH, LOGPROBS),
    Choice("", FinishReason.TOOL_CALLS, tool_calls=(ToolCall("call_1", "f", '{"x": "✓"}'),)),
)


async def test_log_probabilities_and_more_choices_round_trip(
    completion_cache: CompletionCache,
) -> None:
    """What a request for ``logprobs`` or ``n`` > 1 caches comes back whole (a choice's
    calls too), and an entry with empty log probabilities (asked for, none generated)
    keeps them empty, not absent."""
    await completion_cache.put(entry(logprobs=LOGPROBS, more=CHOICES))
    await completion_cache.put(entry("empty", logprobs=()))

    got = await completion_cache.get("k1", NOW)
    assert got == replace(entry(logprobs=LOGPROBS, more=CHOICES), hit_count=1)
    assert got.completion().more == CHOICES
    assert type(got.more[1].finish_reason) is FinishReason
    empty = await completion_cache.get("empty", NOW)
    assert empty is not None
    assert empty.logprobs == ()
    assert empty.more == ()


async def test_missing_and_expired_entries_are_ignored(completion_cache: CompletionCache) -> None:
    await completion_cache.put(entry(ttl=timedelta(seconds=10)))

    assert await completion_cache.get("other", NOW) is None
    assert await completion_cache.get("k1", NOW + timedelta(seconds=10)) is None


async def test_put_replaces_the_entry(completion_cache: CompletionCache) -> None:
    await completion_cache.put(entry())
    await completion_cache.get("k1", NOW)

    await completion_cache.put(entry(text="new", finish_reason=FinishReason.STOP))

    got = await completion_cache.get("k1", NOW)
    assert got is not None
    assert (got.text, got.finish_reason, got.hit_count) == ("new", FinishReason.STOP, 1)


async def test_purge_removes_only_expired_entries(completion_cache: CompletionCache) -> None:
    await completion_cache.put(entry("old", ttl=timedelta(seconds=1)))
    await completion_cache.put(entry("older", ttl=timedelta(seconds=0)))
    await completion_cache.put(entry("live"))

    purged = await completion_cache.purge_expired(NOW + timedelta(seconds=1))

    assert purged == 2
    assert await completion_cache.purge_expired(NOW + timedelta(seconds=1)) == 0
    assert await completion_cache.get("live", NOW) is not None


async def test_every_string_field_at_its_longest_legal_value_round_trips(
    completion_cache: CompletionCache,
) -> None:
    longest = entry(
        "f" * 64,  # a cache key is a SHA-256 in hex
        model="é" * MODEL_ID_MAX_CHARS,
        text="ü" * 100_000,
    )
    await completion_cache.put(longest)
    flush = getattr(completion_cache, "flush", None)
    if flush is not None:  # written behind: the database must take it too
        await flush()

    assert await completion_cache.get(longest.key, NOW) == replace(longest, hit_count=1)


async def test_an_answer_the_store_cannot_hold_is_rejected_as_such(
    completion_cache: CompletionCache,
) -> None:
    # U+0000 (a byte-level tokenizer can produce it): PostgreSQL's JSONB refuses it. A
    # store either keeps the entry or raises RowsRejected, never another error, so the
    # gateway serves the answer uncached and a write-behind flush sets it aside.
    odd = entry("nul", text="a\x00b")
    try:
        await completion_cache.put(odd)
        flush = getattr(completion_cache, "flush", None)
        if flush is not None:
            await flush()
    except RowsRejected:
        assert await completion_cache.get("nul", NOW) is None
    else:
        stored = await completion_cache.get("nul", NOW)
        assert stored is None or stored.text == "a\x00b"


async def test_purge_works_through_expired_entries_in_batches(
    completion_cache: CompletionCache,
) -> None:
    for n in range(5):
        await completion_cache.put(entry(f"old-{n}", ttl=timedelta(seconds=n)))
    await completion_cache.put(entry("live"))

    assert await completion_cache.purge_expired(NOW + timedelta(seconds=5), batch_rows=2) == 5
    assert await completion_cache.get("live", NOW) is not None


async def test_eviction_keeps_the_most_recently_hit_entries(
    completion_cache: CompletionCache,
) -> None:
    for n, key in enumerate(["a", "b", "c", "d"]):
        await completion_cache.put(entry(key, created_at=NOW + timedelta(seconds=n)))
    await completion_cache.get("a", NOW + timedelta(seconds=10))  # hit last, kept longest

    assert await completion_cache.evict(4) == 0
    assert await completion_cache.evict(2, batch_rows=1) == 2  # b and c: stored earliest
    later = NOW + timedelta(seconds=11)
    assert await completion_cache.get("b", later) is None
    assert await completion_cache.get("c", later) is None
    assert await completion_cache.get("d", later) is not None
    assert await completion_cache.evict(1) == 1
    assert await completion_cache.get("d", later) is not None  # hit just now
    assert await completion_cache.get("a", later) is None


async def test_stats_count_live_entries_and_hits_per_model(
    completion_cache: CompletionCache,
) -> None:
    await completion_cache.put(entry("a1", model="alpha"))
    await completion_cache.put(entry("a2", model="alpha"))
    await completion_cache.put(entry("b1", model="b" * MODEL_ID_MAX_CHARS))
    await completion_cache.put(entry("gone", model="alpha", ttl=timedelta(seconds=1)))
    for _ in range(3):
        await completion_cache.get("a1", NOW)
    await completion_cache.get("b1", NOW)
    stats = await completion_cache.stats(NOW + timedelta(seconds=1))
    assert [(s.model, s.entries, s.hits) for s in stats] == [
        ("alpha", 2, 3),
        ("b" * MODEL_ID_MAX_CHARS, 1, 1),
    ]


async def test_purge_by_model_or_all(completion_cache: CompletionCache) -> None:
    for n in range(5):
        await completion_cache.put(entry(f"a{n}", model="alpha"))
    await completion_cache.put(entry("b1", model="beta"))
    await completion_cache.put(entry("old", model="alpha", ttl=timedelta(seconds=1)))

    assert await completion_cache.purge("alpha", batch_rows=2) == 6  # expired ones too
    assert await completion_cache.get("a0", NOW) is None
    assert await completion_cache.get("b1", NOW) is not None
    assert await completion_cache.purge("nobody") == 0
    assert await completion_cache.purge() == 1
    assert await completion_cache.get("b1", NOW) is None
    assert await completion_cache.stats(NOW) == []
