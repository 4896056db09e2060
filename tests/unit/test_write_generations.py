"""WriteGenerations: a flush takes a generation only once every batch sent in it landed."""

from __future__ import annotations

import asyncio

from llmserver.adapters.redis.write_generations import WriteGenerations

SLOT = ("k", "2026-03")


async def test_closing_waits_for_the_batches_in_flight_and_not_for_later_ones() -> None:
    generations = WriteGenerations()
    first = generations.send()
    closing = asyncio.create_task(generations.close_current())
    await asyncio.sleep(0)
    later = generations.send()  # sent in the new generation: not waited for
    await asyncio.sleep(0.01)
    assert not closing.done()

    generations.queued(first, SLOT, 5, 1, 0)
    generations.landed(first)

    assert await asyncio.wait_for(closing, 1) == [(SLOT, first)]
    assert later == first + 1
    assert generations.taken(SLOT, first).used_tokens == 5


async def test_a_batch_landing_while_the_flush_waits_ends_the_wait() -> None:
    generations = WriteGenerations()
    sent = generations.send()
    closing = asyncio.create_task(generations.close_current())
    await asyncio.sleep(0)  # the flush now waits for the batch
    generations.landed(sent)

    assert await asyncio.wait_for(closing, 1) == []


async def test_what_was_not_taken_is_taken_by_the_next_flush() -> None:
    generations = WriteGenerations()
    sent = generations.send()
    generations.queued(sent, SLOT, 5, 1, 0)
    generations.landed(sent)

    assert await generations.close_current() == [(SLOT, sent)]  # the take fails: not taken
    again = generations.send()
    generations.queued(again, SLOT, 2, 1, 1)
    generations.landed(again)

    assert await generations.close_current() == [(SLOT, sent), (SLOT, again)]
