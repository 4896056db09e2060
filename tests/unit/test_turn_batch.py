"""TurnBatch: the calls of one event-loop turn are sent together, answered one by one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from llmserver.adapters.redis.turn_batch import TurnBatch


class Recorder:
    def __init__(self, fail: BaseException | None = None, delay: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail
        self.delay = delay

    async def send(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return [item * 10 for item in items]


async def test_calls_of_one_turn_are_one_send_and_each_gets_its_answer() -> None:
    recorder = Recorder()
    batch = TurnBatch(recorder.send)

    first = await asyncio.gather(*(batch(i) for i in range(5)))
    second = await batch(7)

    assert first == [0, 10, 20, 30, 40]
    assert second == 70
    assert recorder.batches == [[0, 1, 2, 3, 4], [7]]


async def test_a_failed_send_fails_every_call_of_its_batch() -> None:
    batch = TurnBatch(Recorder(fail=ConnectionError("down")).send)

    results = await asyncio.gather(batch(1), batch(2), return_exceptions=True)

    assert [type(r) for r in results] == [ConnectionError, ConnectionError]


async def test_a_cancelled_callers_answer_goes_to_orphaned() -> None:
    orphans: list[tuple[int, int]] = []
    batch = TurnBatch(Recorder(delay=0.05).send, orphaned=lambda i, r: orphans.append((i, r)))

    kept = asyncio.create_task(batch(1))
    left = asyncio.create_task(batch(2))
    await asyncio.sleep(0.01)  # sent, not answered yet
    left.cancel()

    assert await kept == 10
    with pytest.raises(asyncio.CancelledError):
        await left
    await asyncio.sleep(0.06)
    assert orphans == [(2, 20)]
