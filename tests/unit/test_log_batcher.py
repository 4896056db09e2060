from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs

from llmserver.adapters.log_batcher import RequestLogBatcher
from llmserver.adapters.memory import MemoryRequestLogStore
from llmserver.domain.logs import LogQuery, RequestLog
from llmserver.domain.ports import RowsRejected

T0 = datetime(2026, 3, 14, tzinfo=UTC)


def row(n: int) -> RequestLog:
    return RequestLog(
        request_id=f"req-{n}", created_at=T0, route="/v1/completions", status=200, latency_ms=1.0
    )


class RecordingSink:
    """A sink that can be made to fail or to block, and signals every write."""

    def __init__(self, failures: int = 0) -> None:
        self.batches: list[list[str]] = []
        self.failures = failures
        self.written = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()

    async def write(self, rows: Sequence[RequestLog]) -> None:
        await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database restarting")
        # What a database does with a value it cannot store: refuse the whole batch.
        if any(r.request_id.startswith("bad") for r in rows):
            raise RowsRejected("value too long for type character varying(128)")
        self.batches.append([r.request_id for r in rows])
        self.written.set()

    @property
    def ids(self) -> list[str]:
        return [request_id for batch in self.batches for request_id in batch]


def flush_failures(logged: Sequence[Mapping[str, object]]) -> int:
    return sum(entry["event"] == "request_log_flush_failed" for entry in logged)


async def room(batcher: RequestLogBatcher) -> None:
    while batcher.full:
        await asyncio.sleep(0.01)


async def test_a_full_batch_is_written_without_waiting_for_the_interval() -> None:
    sink = RecordingSink()
    batcher = RequestLogBatcher(sink, flush_interval_ms=600_000, max_batch_rows=5)
    await batcher.start()

    for n in range(5):
        assert batcher.submit(row(n))
    await asyncio.wait_for(sink.written.wait(), 10)

    assert sink.batches == [[f"req-{n}" for n in range(5)]]
    assert batcher.queue_size == 0
    assert batcher.last_flush_seconds is not None
    await batcher.close()


async def test_a_partial_batch_is_written_after_the_interval() -> None:
    sink = RecordingSink()
    flushes: list[float] = []
    batcher = RequestLogBatcher(sink, flush_interval_ms=5, on_flush=flushes.append)
    await batcher.start()

    batcher.submit(row(1))
    await asyncio.wait_for(sink.written.wait(), 10)

    assert sink.ids == ["req-1"]
    assert len(flushes) == 1
    await batcher.close()


async def test_failed_writes_keep_the_rows_and_retry_in_order() -> None:
    sink = RecordingSink(failures=3)
    batcher = RequestLogBatcher(
        sink, flush_interval_ms=1, max_batch_rows=2, retry_initial_ms=1, retry_max_ms=2
    )
    await batcher.start()

    with capture_logs() as logged:
        for n in range(5):
            batcher.submit(row(n))
        assert await batcher.close() == 0

    assert sink.ids == [f"req-{n}" for n in range(5)]
    assert flush_failures(logged) == 3


async def test_rejected_rows_are_isolated_and_an_outage_while_splitting_repeats_no_row() -> None:
    sink = RecordingSink()
    batcher = RequestLogBatcher(
        sink, flush_interval_ms=600_000, max_batch_rows=16, retry_initial_ms=1, retry_max_ms=1
    )
    await batcher.start()
    ids = [f"bad-{n}" if n in (3, 4, 11) else f"req-{n}" for n in range(16)]
    for request_id in ids:
        batcher.submit(replace(row(0), request_id=request_id))
    # Splitting, rows 0-1 and 2 are written, then the database restarts (the 7th write,
    # row 3 alone): the retry must start at row 3 and write nothing twice.
    original = sink.write
    calls = 0

    async def restart_midway(rows: Sequence[RequestLog]) -> None:
        nonlocal calls
        calls += 1
        if calls == 7:
            raise ConnectionError("database restarting")
        await original(rows)

    sink.write = restart_midway  # type: ignore[method-assign]
    with capture_logs() as logged:
        assert await batcher.close() == 0

    assert sink.ids == [i for i in ids if not i.startswith("bad")]
    assert batcher.dead_lettered_rows == 3
    assert flush_failures(logged) == 1
    assert batcher.queue_size == 0


async def test_a_full_queue_refuses_and_counts_until_the_sink_catches_up() -> None:
    sink = RecordingSink()
    sink.gate.clear()  # the database hangs
    batcher = RequestLogBatcher(sink, flush_interval_ms=1, max_batch_rows=2, max_queue=4)
    await batcher.start()
    for n in range(4):
        assert batcher.submit(row(n))

    assert batcher.full
    assert not batcher.submit(row(99))
    assert batcher.rejected_rows == 1

    sink.gate.set()
    await asyncio.wait_for(room(batcher), 10)
    assert batcher.submit(row(4))
    await batcher.close()

    assert sink.ids == [f"req-{n}" for n in range(5)]


async def test_close_flushes_everything_and_refuses_later_rows() -> None:
    store = MemoryRequestLogStore()
    batcher = RequestLogBatcher(store, flush_interval_ms=600_000, max_batch_rows=100)
    await batcher.start()
    for n in range(250):
        batcher.submit(row(n))

    assert await batcher.close() == 0

    assert (await store.query(LogQuery(limit=1)))[1] == 250
    assert not batcher.submit(row(251))
    assert batcher.rejected_rows == 1


async def test_close_reports_rows_a_dead_sink_never_took() -> None:
    sink = RecordingSink(failures=10**9)
    batcher = RequestLogBatcher(sink, flush_interval_ms=1, retry_initial_ms=1, retry_max_ms=1)
    await batcher.start()
    for n in range(3):
        batcher.submit(row(n))

    assert await batcher.close(timeout_s=0.05) == 3


def test_batch_size_must_fit_the_queue() -> None:
    with pytest.raises(ValueError, match="max_batch_rows"):
        RequestLogBatcher(MemoryRequestLogStore(), max_batch_rows=10, max_queue=5)
