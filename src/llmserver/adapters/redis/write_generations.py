"""What a replica has queued in Redis for its database writes, by write generation.

Why generations: a flush takes a replica's queued usage out of Redis while settlements may
still be on their way there. Each settlement is queued under the generation current when it
was sent; a flush first starts a new generation, waits until the settlements sent in the
old one have landed, and only then takes the old one's fields. What Redis gives back can
then be compared with what this replica knows it queued, without a settlement landing in
between: if Redis gives back less, it lost the fields (a restart without persistence) and
the replica's own record is written instead.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from llmserver.adapters.pending_usage import PendingUsage, Slot, Totals


class WriteGenerations:
    def __init__(self) -> None:
        self.current = 0
        self._queued: defaultdict[int, set[Slot]] = defaultdict(set)
        self._unsent: defaultdict[int, PendingUsage] = defaultdict(PendingUsage)
        self._in_flight: defaultdict[int, int] = defaultdict(int)
        self._landed: dict[int, asyncio.Event] = {}

    def send(self) -> int:
        """A settlement batch leaves: the generation it queues under."""
        self._in_flight[self.current] += 1
        return self.current

    def queued(
        self, generation: int, slot: Slot, used_tokens: int, requests: int, hits: int
    ) -> None:
        """Redis confirmed this settlement's usage queued under ``generation``."""
        self._queued[generation].add(slot)
        self._unsent[generation].add(slot, used_tokens, requests, hits)

    def landed(self, generation: int) -> None:
        """A batch sent in ``generation`` has its answer (or its error)."""
        self._in_flight[generation] -= 1
        if not self._in_flight[generation]:
            del self._in_flight[generation]
            event = self._landed.pop(generation, None)
            if event is not None:
                event.set()

    def mark(self, slot: Slot) -> None:
        """``slot`` has fields to take (usage taken over from a dead replica)."""
        self._queued[self.current].add(slot)

    async def close_current(self) -> list[tuple[Slot, int]]:
        """Start a new generation; once every batch of the old ones has landed, what is
        queued in them: ``(slot, generation)`` pairs to take."""
        closing = self.current
        self.current += 1
        # The events exist before the first ``await``: a batch landing meanwhile sets them.
        waiting = [
            self._landed.setdefault(g, asyncio.Event()) for g in self._in_flight if g <= closing
        ]
        for event in waiting:
            await event.wait()
        return [(slot, g) for g in sorted(self._queued) if g <= closing for slot in self._queued[g]]

    def taken(self, slot: Slot, generation: int) -> Totals:
        """What this replica queued for ``slot`` in ``generation``, now taken."""
        self._queued[generation].discard(slot)
        mine = self._unsent[generation].pop(slot)
        if not self._queued[generation]:
            del self._queued[generation]
            self._unsent.pop(generation, None)
        return mine

    def drain_into(self, pending: PendingUsage) -> None:
        """Everything not taken, to be written without Redis (at shutdown)."""
        for unsent in self._unsent.values():
            unsent.drain_into(pending)
        self._unsent.clear()
        self._queued.clear()

    def totals(self) -> list[PendingUsage]:
        return list(self._unsent.values())
