"""A replica's lease: a Redis key that exists while the replica lives.

The quota scripts count a replica's holds and leave its unwritten usage alone only while
its lease key exists; a replica that dies stops renewing it, and ``lease_s`` later the
others drop its holds and take its usage over. Renewing every third of the lease leaves two
renewals of slack for a slow event loop or a short Redis hiccup.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable

import redis.asyncio as aioredis

REDIS_ERRORS = (aioredis.RedisError, OSError)


class ReplicaLease:
    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        lease_s: float,
        on_error: Callable[[BaseException], None],
    ) -> None:
        self.replica = secrets.token_hex(8)
        """This process's name in the quota counters."""
        self.prefix = prefix
        """Lease keys are ``prefix + replica``."""
        self._client = client
        self._lease_s = lease_s
        self._on_error = on_error
        self._heartbeat: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    async def start(self) -> None:
        """Take the lease and keep renewing it."""
        if self._heartbeat is None:
            self._stopped.clear()
            self._heartbeat = asyncio.create_task(self._renew_forever(), name="usage-lease")
            with contextlib.suppress(*REDIS_ERRORS):
                await self._renew()

    def stop_renewing(self) -> None:
        """What a crash does to the lease (tests use it to play one)."""
        self._stopped.set()

    async def close(self) -> None:
        """Stop renewing and give the lease up, so that whatever is left under this
        replica's name is taken over at once rather than when the lease runs out.

        The heartbeat is told to stop and given a renewal's time to finish, then
        cancelled: a cancellation alone, landing inside a Redis command, once left the
        loop renewing and this close waiting on it (a test's teardown hung)."""
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            self._stopped.set()
            _, pending = await asyncio.wait({heartbeat}, timeout=self._lease_s / 3)
            for task in pending:
                task.cancel()
        with contextlib.suppress(*REDIS_ERRORS):
            await self._client.delete(self.prefix + self.replica)

    async def _renew(self) -> None:
        await self._client.set(self.prefix + self.replica, 1, px=int(self._lease_s * 1000))

    async def _renew_forever(self) -> None:
        while not self._stopped.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._lease_s / 3):
                    await self._stopped.wait()
            if self._stopped.is_set():
                return
            try:
                await self._renew()
            except REDIS_ERRORS as exc:
                self._on_error(exc)
