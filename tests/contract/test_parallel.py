"""Requests in flight over every ``ParallelStore``: at most the limit held, a release frees
exactly one slot, concurrent acquisitions never pass the limit."""

from __future__ import annotations

import asyncio

from llmserver.domain.ports import ParallelStore


async def test_admits_up_to_the_limit_and_a_release_frees_one_slot(
    parallel_store: ParallelStore,
) -> None:
    assert [await parallel_store.acquire("b", 2) for _ in range(3)] == [True, True, False]

    await parallel_store.release("b")

    assert [await parallel_store.acquire("b", 2) for _ in range(2)] == [True, False]


async def test_buckets_are_independent(parallel_store: ParallelStore) -> None:
    assert await parallel_store.acquire("a", 1)
    assert await parallel_store.acquire("c", 1)
    assert not await parallel_store.acquire("a", 1)


async def test_a_lower_limit_applies_at_once(parallel_store: ParallelStore) -> None:
    for _ in range(3):
        assert await parallel_store.acquire("b", 5)

    assert not await parallel_store.acquire("b", 3)
    await parallel_store.release("b")
    assert await parallel_store.acquire("b", 3)


async def test_concurrent_acquisitions_never_pass_the_limit(parallel_store: ParallelStore) -> None:
    admitted = await asyncio.gather(*(parallel_store.acquire("b", 4) for _ in range(100)))

    assert sum(admitted) == 4
    await asyncio.gather(*(parallel_store.release("b") for _ in range(4)))
    admitted = await asyncio.gather(*(parallel_store.acquire("b", 4) for _ in range(100)))
    assert sum(admitted) == 4
