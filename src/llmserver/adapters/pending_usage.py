"""Settled usage waiting for the database, and the one way it is written there.

Both quota ledgers that answer without the database (a single process's memory, the
replicas' Redis) queue what requests settled here and add it to the durable record in
one transaction per flush. The database only ever receives additions, so a batch is
written once or kept whole for the next flush: never half, never twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from llmserver.adapters.dead_letter import dead_letter, write_isolating
from llmserver.domain.ports import RowsRejected
from llmserver.domain.quota import UsageRecord

Slot = tuple[str, str]
"""``(key_id, period)``"""


class DurableUsage(Protocol):
    """The durable record of usage (``SqlUsageStore``), as the written-behind ledgers use it."""

    async def get(self, key_id: str, period: str) -> UsageRecord: ...

    async def list(
        self, *, key_id: str | None = None, period: str | None = None
    ) -> Sequence[UsageRecord]: ...

    async def add(self, totals: Sequence[UsageRecord]) -> None: ...


@dataclass(slots=True)
class Totals:
    used_tokens: int = 0
    requests: int = 0
    cache_hits: int = 0


class PendingUsage:
    """Per key and period, the settled usage not yet added to the database."""

    def __init__(self) -> None:
        self._slots: dict[Slot, Totals] = {}

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, slot: Slot) -> bool:
        return slot in self._slots

    def totals(self, slot: Slot) -> Totals | None:
        return self._slots.get(slot)

    def pop(self, slot: Slot) -> Totals:
        return self._slots.pop(slot, None) or Totals()

    def drain_into(self, other: PendingUsage) -> None:
        for slot, t in self._slots.items():
            other.add(slot, t.used_tokens, t.requests, t.cache_hits)
        self._slots.clear()

    def add(self, slot: Slot, used_tokens: int, requests: int, cache_hits: int) -> None:
        totals = self._slots.get(slot)
        if totals is None:
            totals = self._slots[slot] = Totals()
        totals.used_tokens += used_tokens
        totals.requests += requests
        totals.cache_hits += cache_hits

    async def write(self, durable: DurableUsage) -> None:
        """Add everything queued to ``durable``. On an outage the batch stays queued (with
        what was settled meanwhile) and this raises; a row the database rejects is set
        aside (``dead_letter``) rather than retried forever."""
        if not self._slots:
            return
        batch, self._slots = self._slots, {}

        def settled(records: Sequence[UsageRecord], error: RowsRejected | None) -> None:
            for r in records:
                del batch[(r.key_id, r.period)]
            if error is not None:
                dead_letter("usage", [f"{r.key_id}/{r.period}" for r in records], error)

        try:
            records = [
                UsageRecord(key, period, t.used_tokens, 0, t.requests, t.cache_hits)
                for (key, period), t in batch.items()
            ]
            await write_isolating(durable.add, records, settled)
        except BaseException:
            for slot, t in batch.items():
                self.add(slot, t.used_tokens, t.requests, t.cache_hits)
            raise
