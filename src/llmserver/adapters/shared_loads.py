"""Concurrent loads of the same key share one run.

The API key cache, the single-process quota ledger and the durable completion cache each
read their store when a key is first needed, and requests for one key arrive together.
Sharing one read keeps them from queueing on the store (SQLite has a single connection)
or overwriting each other's fresh copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from functools import partial
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SharedLoads(Generic[K, V]):
    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[V]] = {}

    def start(self, key: K, load: Callable[[], Awaitable[V]]) -> asyncio.Future[V]:
        """The load running for ``key``, or ``load()`` started as it."""
        running = self._running.get(key)
        if running is None:
            running = self._running[key] = asyncio.ensure_future(load())
            running.add_done_callback(partial(self._landed, key))
        return running

    async def join(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """Wait for the shared load; shielded, so a caller that goes away does not cancel
        the load the others wait for."""
        return await asyncio.shield(self.start(key, load))

    def _landed(self, key: K, running: asyncio.Future[V]) -> None:
        if self._running.get(key) is running:
            del self._running[key]
        if not running.cancelled():
            # Retrieved here as well, for a load nobody waits for any more (a refresh
            # ahead, or every caller gone): a failure is retried by the next caller.
            running.exception()
