"""Request logs written behind the response, in batches.

``submit`` is a plain O(1) append (no await, no database round trip on the request);
a background task writes the queue to the sink every ``flush_interval_ms`` or as soon
as ``max_batch_rows`` are waiting.

Nothing is dropped silently:

* A failing sink (database restarting, network blip) keeps the rows queued and retries
  with exponential backoff, in order, until the write succeeds.
* A sink that rejects rows for what they hold (``RowsRejected``: a value too long for its
  column, a NUL character PostgreSQL refuses) would fail the same batch forever and hold
  back every later row. So a rejected batch is split until the offending rows stand
  alone (``dead_letter.write_isolating``); those are set aside with a ``rows_dead_lettered``
  warning naming their request ids and counted in ``dead_lettered_rows``, and the rest are
  written. Whether an error rejects rows or is an outage is decided where the exception
  is seen, by the sink (``sql._rejects``; for SQLite's writer process, in that process):
  only data and constraint errors reject; anything else, unknown errors included, is
  retried, since retrying delays rows where setting them aside loses them.
* The queue is bounded by ``max_queue``. The back-pressure is upstream: while the queue
  is ``full`` the completion routes refuse new requests (``RequestLogBacklog``, 503 with
  ``Retry-After``), so rows stop arriving until the sink catches up. A row that arrives
  anyway (from a request admitted just before) is refused by ``submit``, which returns
  ``False``; the refusal is counted in ``rejected_rows`` and logged once per episode of
  pressure.
* ``close`` flushes everything still queued; if the sink stays down past its timeout it
  reports (logs and returns) how many rows could not be written.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from itertools import islice

import structlog

from llmserver.adapters.dead_letter import dead_letter, write_isolating
from llmserver.domain.logs import RequestLog
from llmserver.domain.ports import RequestLogSink, RowsRejected

log = structlog.get_logger(__name__)


class RequestLogBatcher:
    def __init__(
        self,
        sink: RequestLogSink,
        *,
        flush_interval_ms: int = 250,
        max_batch_rows: int = 500,
        max_queue: int = 10_000,
        retry_initial_ms: int = 100,
        retry_max_ms: int = 5_000,
        on_flush: Callable[[float], None] | None = None,
    ) -> None:
        if not 0 < max_batch_rows <= max_queue:
            raise ValueError("need 0 < max_batch_rows <= max_queue")
        self._sink = sink
        self._interval = flush_interval_ms / 1000
        self._max_batch = max_batch_rows
        self._max_queue = max_queue
        self._retry_initial = retry_initial_ms / 1000
        self._retry_max = retry_max_ms / 1000
        self._on_flush = on_flush
        self._queue: deque[RequestLog] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._under_pressure = False
        self.last_flush_seconds: float | None = None
        """Duration of the latest successful write, for the metrics."""
        self.rejected_rows = 0
        self.dead_lettered_rows = 0
        """Rows the sink rejected for their values, set aside so that later rows flow."""

    @property
    def queue_size(self) -> int:
        return len(self._queue)

    @property
    def full(self) -> bool:
        return len(self._queue) >= self._max_queue

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="request-log-batcher")

    def submit(self, row: RequestLog) -> bool:
        """Queue a row without waiting. ``False`` means it was refused (queue full or
        batcher closed) and counted in ``rejected_rows``."""
        if self._closing or self.full:
            self._reject()
            return False
        self._queue.append(row)
        self._under_pressure = False
        if len(self._queue) >= self._max_batch:
            self._wake.set()
        return True

    def _reject(self) -> None:
        self.rejected_rows += 1
        if not self._under_pressure:
            self._under_pressure = True
            log.warning(
                "request_log_rejected",
                reason="closed" if self._closing else "queue_full",
                queue_size=len(self._queue),
                rejected_total=self.rejected_rows,
            )

    async def close(self, timeout_s: float = 30.0) -> int:
        """Stop accepting rows, flush the queue, and return how many rows could not be
        written within ``timeout_s`` (0 unless the sink stayed down)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except TimeoutError:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        lost = len(self._queue)
        if lost:
            log.error("request_logs_unwritten_at_shutdown", rows=lost)
        return lost

    async def _run(self) -> None:
        while True:
            if not self._closing and len(self._queue) < self._max_batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._interval)
                self._wake.clear()
            if self._queue:
                await self._drain()
            elif self._closing:
                return

    async def _drain(self) -> None:
        """Write every queued row, one batch at a time, retrying failed batches."""
        delay = self._retry_initial
        while self._queue:
            batch = list(islice(self._queue, self._max_batch))
            started = time.perf_counter()
            try:
                await write_isolating(self._sink.write, batch, self._settled)
            except Exception as exc:  # an outage: keep the rows not settled, back off, retry
                log.warning(
                    "request_log_flush_failed",
                    queued=len(self._queue),
                    retry_in_s=delay,
                    error=f"{type(exc).__name__}: {exc}",
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)
                continue
            elapsed = time.perf_counter() - started
            delay = self._retry_initial
            self.last_flush_seconds = elapsed
            if self._on_flush is not None:
                self._on_flush(elapsed)

    def _settled(self, rows: Sequence[RequestLog], error: RowsRejected | None) -> None:
        """Rows at the head of the queue were written (``error`` None) or set aside."""
        for _ in rows:
            self._queue.popleft()
        if error is not None:
            self.dead_lettered_rows += len(rows)
            dead_letter("request_logs", [row.request_id for row in rows], error)
