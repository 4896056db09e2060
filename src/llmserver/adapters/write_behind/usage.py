from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from llmserver.adapters.pending_usage import DurableUsage, PendingUsage, Slot
from llmserver.domain.ports import UsageStore
from llmserver.domain.quota import ReservationResult, UsageRecord, fits
from llmserver.domain.single_flight import SingleFlight

EVICT_IDLE_S = 600.0
"""Counters untouched this long (and fully written) leave memory; a later request re-reads
them from the database."""


@dataclass(slots=True)
class _Counters:
    used_tokens: int = 0
    reserved_tokens: int = 0
    requests: int = 0
    cache_hits: int = 0
    touched: float = 0.0

    def record(self, slot: Slot) -> UsageRecord:
        return UsageRecord(
            slot[0], slot[1], self.used_tokens, self.reserved_tokens, self.requests, self.cache_hits
        )


class WriteBehindUsageStore(UsageStore):
    """The ``UsageStore`` of a process that is the only writer of its database's usage.

    A key's counters for a period are read from the database once, then every reserve,
    settle and release is a dictionary update with no ``await`` in between the check
    and the add (so admission stays atomic on the event loop), and the settled totals are
    added to the database by ``flush`` in one transaction. Reservations live only here:
    they belong to requests in flight, which a crash ends anyway, so a crash can no longer
    leave tokens reserved forever. A crash loses at most one flush interval of settled
    usage.
    """

    def __init__(self, durable: DurableUsage, *, evict_idle_s: float = EVICT_IDLE_S) -> None:
        self._durable = durable
        self._evict_idle_s = evict_idle_s
        self._ledger: dict[Slot, _Counters] = {}
        self._loads: SingleFlight[Slot, _Counters] = SingleFlight()
        self._pending = PendingUsage()
        self._last_eviction = time.monotonic()

    @property
    def pending(self) -> int:
        """Keys with settled usage not yet in the database."""
        return len(self._pending)

    # Every use reads ``self._known(slot) or await self._load(slot)``: a known key's
    # counters without a coroutine, since reserve and settle run on every request.
    def _known(self, slot: Slot) -> _Counters | None:
        counters = self._ledger.get(slot)
        if counters is not None:
            counters.touched = time.monotonic()
        return counters

    async def _load(self, slot: Slot) -> _Counters:
        # Concurrent first requests of a key share one read, so none overwrites another's
        # reservation with a fresh copy.
        return await self._loads.join(slot, partial(self._read, slot))

    async def _read(self, slot: Slot) -> _Counters:
        stored = await self._durable.get(*slot)
        # Only this process's reservations are real; one left in the database by the
        # previous, per-request store is ignored.
        counters = _Counters(
            stored.used_tokens, 0, stored.requests, stored.cache_hits, time.monotonic()
        )
        self._ledger[slot] = counters
        return counters

    async def reserve(
        self, key_id: str, period: str, tokens: int, quota: int | None
    ) -> ReservationResult:
        slot = (key_id, period)
        counters = self._known(slot) or await self._load(slot)
        record = counters.record(slot)
        if not fits(record, tokens, quota):
            return ReservationResult(False, record)
        counters.reserved_tokens += tokens
        record.reserved_tokens += tokens
        return ReservationResult(True, record)

    async def settle(
        self, key_id: str, period: str, reserved: int, used: int, *, cache_hit: bool = False
    ) -> None:
        slot = (key_id, period)
        counters = self._known(slot) or await self._load(slot)
        counters.reserved_tokens = max(0, counters.reserved_tokens - reserved)
        hit = int(cache_hit)
        counters.used_tokens += used
        counters.requests += 1
        counters.cache_hits += hit
        self._pending.add(slot, used, 1, hit)

    async def release(self, key_id: str, period: str, reserved: int) -> None:
        slot = (key_id, period)
        counters = self._known(slot) or await self._load(slot)
        counters.reserved_tokens = max(0, counters.reserved_tokens - reserved)

    async def get(self, key_id: str, period: str) -> UsageRecord:
        slot = (key_id, period)
        counters = self._known(slot) or await self._load(slot)
        return counters.record(slot)

    async def list(
        self, *, key_id: str | None = None, period: str | None = None
    ) -> Sequence[UsageRecord]:
        # Counters in memory are the freshest; the rest are fully written.
        merged = {
            (r.key_id, r.period): UsageRecord(
                r.key_id, r.period, r.used_tokens, 0, r.requests, r.cache_hits
            )
            for r in await self._durable.list(key_id=key_id, period=period)
        }
        for slot, counters in self._ledger.items():
            if (key_id is None or slot[0] == key_id) and (period is None or slot[1] == period):
                merged[slot] = counters.record(slot)
        return sorted(merged.values(), key=lambda r: (r.period, r.key_id))

    async def flush(self) -> None:
        """Add the settled usage to the database (see ``PendingUsage.write``)."""
        await self._pending.write(self._durable)
        self._evict_idle()

    def _evict_idle(self) -> None:
        now = time.monotonic()
        if now - self._last_eviction < min(60.0, self._evict_idle_s):
            return
        self._last_eviction = now
        idle = [
            slot
            for slot, c in self._ledger.items()
            if c.reserved_tokens == 0
            and slot not in self._pending
            and now - c.touched >= self._evict_idle_s
        ]
        for slot in idle:
            del self._ledger[slot]
