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

    async def start(self) -> None:
        """Take the lease and keep renewing it."""
        if self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._renew_forever(), name="usage-lease")
            with contextlib.suppress(*REDIS_ERRORS):
                await self._renew()

    def stop_renewing(self) -> None:
        """What a crash does to the lease (tests use it to play one)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()

    async def close(self) -> None:
        """Stop renewing and give the lease up, so that whatever is left under this
        replica's name is taken over at once rather than when the lease runs out."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        with contextlib.suppress(*REDIS_ERRORS):
            await self._client.delete(self.prefix + self.replica)

    async def _renew(self) -> None:
        await self._client.set(self.prefix + self.replica, 1, px=int(self._lease_s * 1000))

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self._lease_s / 3)
            try:
                await self._renew()
            except REDIS_ERRORS as exc:
                self._on_error(exc)
