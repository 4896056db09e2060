"""One run per key for concurrent callers, and what happens when the last caller leaves."""

from __future__ import annotations

import asyncio

import pytest

from llmserver.domain.single_flight import SingleFlight


class _Load:
    """A load that counts its runs and finishes when told to."""

    def __init__(self) -> None:
        self.runs = 0
        self.release = asyncio.Event()

    async def __call__(self) -> str:
        self.runs += 1
        await self.release.wait()
        return "loaded"


async def _turns() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_concurrent_callers_share_one_run() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    load = _Load()
    waiting = [asyncio.create_task(flights.join("k", load)) for _ in range(3)]
    await asyncio.sleep(0)
    assert "k" in flights
    load.release.set()
    assert await asyncio.gather(*waiting) == ["loaded"] * 3
    assert load.runs == 1
    assert not flights


@pytest.mark.parametrize("cancel_unwaited", [True, False])
async def test_the_last_caller_leaving_cancels_the_run_only_when_asked(
    cancel_unwaited: bool,
) -> None:
    flights: SingleFlight[str, str] = SingleFlight(cancel_unwaited=cancel_unwaited)
    load = _Load()
    first = asyncio.create_task(flights.join("k", load))
    second = asyncio.create_task(flights.join("k", load))
    await _turns()
    run = flights.start("k", load)
    assert load.runs == 1
    first.cancel()
    await _turns()
    assert not run.done()  # one caller still waits: the run goes on for it
    second.cancel()
    await _turns()
    assert run.cancelled() is cancel_unwaited
    assert ("k" in flights) is not cancel_unwaited
    load.release.set()
    await _turns()
    assert run.done()
    assert not flights
    assert load.runs == 1


async def test_a_failed_run_is_retried_by_the_next_caller() -> None:
    flights: SingleFlight[str, str] = SingleFlight()
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("store down")
        return "loaded"

    with pytest.raises(RuntimeError):
        await flights.join("k", flaky)
    assert await flights.join("k", flaky) == "loaded"
