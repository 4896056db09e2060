"""The in-memory TPM window: an entry settled to no tokens leaves it when it is the newest
(a cache hit's, charged nothing), so a hot key's window does not keep a minute of them."""

from __future__ import annotations

from llmserver.adapters.memory import MemoryTokenRateStore

NOW = 1_000_000


async def test_entries_settled_to_nothing_do_not_pile_up() -> None:
    store = MemoryTokenRateStore()
    for n in range(1000):
        taken = await store.reserve("tpm:k", 10**9, 26, NOW + n)
        assert taken.hold is not None
        await store.settle(taken.hold, 0)
    assert store.entries("tpm:k") == 0
    assert store.held("tpm:k", NOW + 1000) == 0


async def test_an_older_entry_settled_to_nothing_stays_counted_as_nothing() -> None:
    store = MemoryTokenRateStore()
    first = await store.reserve("tpm:k", 100, 30, NOW)
    second = await store.reserve("tpm:k", 100, 40, NOW + 1)
    assert first.hold is not None
    assert second.hold is not None
    await store.settle(first.hold, 0)  # not the newest: kept, holding nothing
    assert store.held("tpm:k", NOW + 2) == 40
    assert store.entries("tpm:k") == 2
    await store.settle(second.hold, 10)
    assert store.held("tpm:k", NOW + 2) == 10
    refused = await store.reserve("tpm:k", 100, 95, NOW + 2)
    assert not refused.decision.admitted
    # The entry that holds the excess is the second: the first holds nothing.
    assert refused.decision.retry_after_ms == NOW + 1 + 60_000 - (NOW + 2)
