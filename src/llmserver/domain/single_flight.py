"""Concurrent callers for one key share one run of its load.

Used by the gateway (identical completions share one inference) and by the adapters'
caches (the API key cache, the quota ledger and the durable completion cache each read
their store when a key is first needed, and requests for one key arrive together).

The run is a task of its own and each caller waits on it shielded, so a caller that goes
away does not cancel it for the others. What happens when the last caller has gone is the
owner's choice: an inference nobody waits for is cancelled (``cancel_unwaited``), while a
store read runs on, to fill its cache for the next caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Flight(Generic[V]):
    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Future[V]) -> None:
        self.task = task
        self.waiters = 0


class SingleFlight(Generic[K, V]):
    __slots__ = ("_cancel_unwaited", "_running")

    def __init__(self, *, cancel_unwaited: bool = False) -> None:
        self._cancel_unwaited = cancel_unwaited
        self._running: dict[K, _Flight[V]] = {}

    def __len__(self) -> int:
        """How many keys have a run in progress."""
        return len(self._running)

    def __contains__(self, key: K) -> bool:
        return key in self._running

    def start(self, key: K, load: Callable[[], Awaitable[V]]) -> asyncio.Future[V]:
        """The run in progress for ``key``, or ``load()`` started as it."""
        return self._flight(key, load).task

    async def join(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """Wait for the run for ``key``, starting ``load()`` if none is in progress."""
        flight = self._flight(key, load)
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1
            if self._cancel_unwaited and flight.waiters == 0 and not flight.task.done():
                self._landed(key, flight)
                flight.task.cancel()

    def _flight(self, key: K, load: Callable[[], Awaitable[V]]) -> _Flight[V]:
        flight = self._running.get(key)
        if flight is None:
            flight = self._running[key] = _Flight(asyncio.ensure_future(load()))
            flight.task.add_done_callback(partial(self._landed, key, flight))
        return flight

    def _landed(self, key: K, flight: _Flight[V], *_: object) -> None:
        if self._running.get(key) is flight:
            del self._running[key]
        if flight.task.done() and not flight.task.cancelled():
            # Retrieved here as well, for a run nobody waits for any more (a refresh
            # ahead, or every caller gone): a failure is retried by the next caller.
            flight.task.exception()
