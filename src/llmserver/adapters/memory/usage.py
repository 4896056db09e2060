from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from llmserver.domain.ports import UsageStore
from llmserver.domain.quota import ReservationResult, UsageRecord, fits


class MemoryUsageStore(UsageStore):
    """Single-process usage counters. Each method runs without an ``await`` inside, so
    on one event loop the check-and-add of ``reserve`` is atomic."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], UsageRecord] = {}

    def _record(self, key_id: str, period: str) -> UsageRecord:
        return self._records.get((key_id, period), UsageRecord(key_id, period))

    async def reserve(
        self, key_id: str, period: str, tokens: int, quota: int | None
    ) -> ReservationResult:
        record = self._record(key_id, period)
        if not fits(record, tokens, quota):
            return ReservationResult(False, record)
        record = replace(record, reserved_tokens=record.reserved_tokens + tokens)
        self._records[(key_id, period)] = record
        return ReservationResult(True, record)

    async def settle(
        self, key_id: str, period: str, reserved: int, used: int, *, cache_hit: bool = False
    ) -> None:
        record = self._record(key_id, period)
        self._records[(key_id, period)] = replace(
            record,
            reserved_tokens=max(0, record.reserved_tokens - reserved),
            used_tokens=record.used_tokens + used,
            requests=record.requests + 1,
            cache_hits=record.cache_hits + int(cache_hit),
        )

    async def release(self, key_id: str, period: str, reserved: int) -> None:
        record = self._record(key_id, period)
        self._records[(key_id, period)] = replace(
            record, reserved_tokens=max(0, record.reserved_tokens - reserved)
        )

    async def get(self, key_id: str, period: str) -> UsageRecord:
        return self._record(key_id, period)

    async def list(
        self, *, key_id: str | None = None, period: str | None = None
    ) -> Sequence[UsageRecord]:
        return sorted(
            (
                r
                for r in self._records.values()
                if (key_id is None or r.key_id == key_id) and (period is None or r.period == period)
            ),
            key=lambda r: (r.period, r.key_id),
        )
