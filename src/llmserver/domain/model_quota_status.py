"""Where each key's quota on each model stands this month (``ModelLimit.quota_tokens``):
what the admin API, the console and ``llmserver keys`` show."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from llmserver.domain.budget import window_reset_at
from llmserver.domain.keys import ApiKey
from llmserver.domain.period_records import PeriodRecords
from llmserver.domain.ports import UsageStore
from llmserver.domain.quota import model_ledger_id, period_of


@dataclass(frozen=True, slots=True)
class ModelQuotaStatus:
    key_id: str
    model_id: str
    period: str
    """``YYYY-MM``, UTC."""
    quota_tokens: int
    used_tokens: int
    reserved_tokens: int
    """Held by requests in flight (on this replica's view of the ledger)."""
    remaining_tokens: int
    """``UsageRecord.remaining``: what a request may still reserve."""
    resets_at: datetime


async def model_quota_statuses(
    ledger: UsageStore, keys: Sequence[ApiKey], now: datetime
) -> list[ModelQuotaStatus]:
    """This month's count of every quota on a model that a key in ``keys`` has, read
    together (``PeriodRecords``), not a read each."""
    period = period_of(now)
    quotas = [
        (key, limit.model_id, limit.quota_tokens)
        for key in keys
        for limit in key.model_limits
        if limit.quota_tokens is not None
    ]
    ids = [model_ledger_id(key.id, model_id) for key, model_id, _ in quotas]
    month = await PeriodRecords.of(ledger, period, set(ids))
    records = [month.record(ledger_id) for ledger_id in ids]
    return [
        ModelQuotaStatus(
            key.id,
            model_id,
            period,
            quota,
            record.used_tokens,
            record.reserved_tokens,
            record.remaining(quota),
            window_reset_at(period),
        )
        for (key, model_id, quota), record in zip(quotas, records, strict=True)
    ]
