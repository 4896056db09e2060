from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)


class PeriodicFlush:
    """Calls ``flush`` every ``interval_s`` and once more on ``close``.

    ``flush`` must keep whatever it failed to write so that the next call retries it;
    failures back off exponentially up to ``retry_max_s`` and are logged, never raised.
    ``final``, when given, replaces ``flush`` on ``close``: the last chance to write what
    ``flush`` keeps waiting for (e.g. a service that is down) somewhere it will not be lost.
    """

    def __init__(
        self,
        name: str,
        flush: Callable[[], Awaitable[None]],
        *,
        interval_s: float,
        retry_max_s: float = 5.0,
        final: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._name = name
        self._flush = flush
        self._final = final or flush
        self._interval = interval_s
        self._retry_max = max(retry_max_s, interval_s)
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"flush-{self._name}")

    async def _run(self) -> None:
        delay = self._interval
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            if self._stop.is_set():
                return
            delay = (
                self._interval
                if await self._attempt(self._flush)
                else min(delay * 2, self._retry_max)
            )

    async def _attempt(self, flush: Callable[[], Awaitable[None]]) -> bool:
        try:
            await flush()
        except Exception as exc:  # the database may be restarting: keep the rows, retry
            log.warning("write_behind_flush_failed", store=self._name, error=f"{exc!r}")
            return False
        return True

    async def close(self, timeout_s: float = 30.0) -> bool:
        """Stop the loop and flush until it succeeds or ``timeout_s`` passes.

        A flush in progress is let finish rather than cancelled: cancelled, it could not
        know whether its rows were written, and adding them again would count them twice.
        """
        if self._task is not None:
            self._stop.set()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        deadline = time.monotonic() + timeout_s
        delay = min(self._interval, 0.1)
        while not await self._attempt(self._final):
            if time.monotonic() + delay > deadline:
                log.error("write_behind_unflushed_at_shutdown", store=self._name)
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry_max)
        return True
