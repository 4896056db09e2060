"""One period's records of a ledger, read in one listing: what the admin views that show
many keys or teams at once read, where a ``get`` each was a read per key (a round trip
each on PostgreSQL or Redis, for every console page load)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from llmserver.domain.ports import UsageStore
from llmserver.domain.quota import UsageRecord


@dataclass(frozen=True, slots=True)
class PeriodRecords:
    """The records of ``period`` by ledger id. The port lists a period's records of every
    ledger id (keys, teams, a key's models alike); only those asked for are kept. One id
    is read with the ledger's ``get`` instead (one record, not the period's every record),
    none not at all. An id with no record has counted nothing yet, as ``get`` answers."""

    period: str
    records: Mapping[str, UsageRecord]

    @classmethod
    async def of(cls, ledger: UsageStore, period: str, ids: Collection[str]) -> PeriodRecords:
        if len(ids) <= 1:
            read = [await ledger.get(ledger_id, period) for ledger_id in ids]
        else:
            read = [r for r in await ledger.list(period=period) if r.key_id in ids]
        return cls(period, {r.key_id: r for r in read})

    def record(self, ledger_id: str) -> UsageRecord:
        return self.records.get(ledger_id) or UsageRecord(ledger_id, self.period)
