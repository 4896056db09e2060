"""``read_body``'s timer against a receive that never answers: its own expiry is a 408, a
cancellation from outside (the server stopping) stays a cancellation, even when both land in
the same turn of the event loop. The live cases are in tests/integration/security."""

from __future__ import annotations

import asyncio
import time

import pytest
from litestar.types import ReceiveMessage

from llmserver.app.lane.body import BodyTimeout, read_body

SCOPE = {"type": "http", "headers": [(b"content-length", b"100")]}


async def _never() -> ReceiveMessage:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def _waiting_read(timeout_s: float) -> asyncio.Task[bytes]:
    task = asyncio.create_task(read_body(SCOPE, _never, 1000, timeout_s))  # type: ignore[arg-type]
    await asyncio.sleep(0.001)  # waiting in receive(), the timer armed
    return task


async def test_a_body_that_never_comes_is_a_timeout() -> None:
    task = await _waiting_read(0.01)
    with pytest.raises(BodyTimeout, match=r"within 0\.01 s"):
        await asyncio.wait_for(task, 5)
    assert task.cancelling() == 0


async def test_a_cancellation_from_outside_stays_one() -> None:
    task = await _waiting_read(30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancellation_from_outside_in_the_timers_turn_stays_one() -> None:
    task = await _waiting_read(0.01)
    asyncio.get_running_loop().call_later(0.01, task.cancel)
    time.sleep(0.05)  # both callbacks are due in the same next turn, before the task runs
    with pytest.raises(asyncio.CancelledError):
        await task
