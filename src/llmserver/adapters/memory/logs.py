from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import fields
from datetime import UTC, date, datetime

from llmserver.domain.logs import CacheStatus, DailyUsage, LogQuery, RequestLog, day_bounds
from llmserver.domain.ports import (
    BATCH_ROWS,
    RequestLogReader,
    RequestLogRetention,
    RequestLogSink,
)

_Day = tuple[date, str | None, str | None, str | None]
"""Day, key, model and team."""
_COUNTS = [f.name for f in fields(DailyUsage)][3:-1]


def _counts(row: RequestLog) -> Counter[str]:
    return Counter(
        requests=1,
        prompt_tokens=row.prompt_tokens,
        completion_tokens=row.completion_tokens,
        cache_hits=int(row.cache_status is CacheStatus.HIT),
        errors=int(row.status >= 400),
        cost_picodollars=row.cost_picodollars,
    )


def _add(totals: dict[_Day, Counter[str]], rows: Iterable[RequestLog]) -> None:
    for row in rows:
        day = (row.created_at.astimezone(UTC).date(), row.key_id, row.model, row.team_id)
        totals.setdefault(day, Counter()).update(_counts(row))


class MemoryRequestLogStore(RequestLogSink, RequestLogReader, RequestLogRetention):
    """Request-log sink, reader and retention in process memory (bounded: oldest rows drop
    first, uncounted; the rows ``expire`` removes are rolled up)."""

    def __init__(self, max_rows: int = 100_000) -> None:
        self._rows: list[RequestLog] = []
        self._max = max_rows
        self._rolled_up: dict[_Day, Counter[str]] = {}

    async def write(self, rows: Sequence[RequestLog]) -> None:
        self._rows.extend(rows)
        if len(self._rows) > self._max:
            del self._rows[: len(self._rows) - self._max]

    async def query(self, query: LogQuery) -> tuple[Sequence[RequestLog], int]:
        matching = [
            row
            for row in reversed(self._rows)
            if (query.key_id is None or row.key_id == query.key_id)
            and (query.model is None or row.model == query.model)
            and (query.status is None or row.status == query.status)
            and (query.since is None or row.created_at >= query.since)
            and (query.until is None or row.created_at < query.until)
            and (query.request_id is None or row.request_id == query.request_id)
            and (query.cache_status is None or row.cache_status is query.cache_status)
        ]
        return matching[query.offset : query.offset + query.limit], len(matching)

    async def export(
        self, since: datetime, until: datetime | None = None, *, batch_rows: int = BATCH_ROWS
    ) -> AsyncIterator[RequestLog]:
        rows = sorted(
            (
                r
                for r in self._rows
                if r.created_at >= since and (until is None or r.created_at < until)
            ),
            key=lambda r: r.created_at,
        )
        for row in rows:
            yield row

    async def prepare(self, now: datetime, months_ahead: int) -> Sequence[str]:
        return []

    async def expire(self, before: datetime, *, batch_rows: int = BATCH_ROWS) -> int:
        expired = [r for r in self._rows if r.created_at < before]
        _add(self._rolled_up, expired)
        self._rows = [r for r in self._rows if r.created_at >= before]
        return len(expired)

    async def daily_usage(
        self,
        since: date,
        until: date,
        *,
        key_id: str | None = None,
        model: str | None = None,
        team_id: str | None = None,
    ) -> Sequence[DailyUsage]:
        start, end = day_bounds(since, until)
        totals = {day: Counter(counts) for day, counts in self._rolled_up.items()}
        _add(totals, (r for r in self._rows if start <= r.created_at < end))
        return [
            DailyUsage(day, key, name, **{c: counts[c] for c in _COUNTS}, team_id=team)
            for (day, key, name, team), counts in sorted(totals.items(), key=_order)
            if since <= day < until
            and (key_id is None or key == key_id)
            and (model is None or name == model)
            and (team_id is None or team == team_id)
        ]


def _order(item: tuple[_Day, Counter[str]]) -> tuple[date, str, str, str]:
    (day, key, model, team), _ = item
    return day, key or "", team or "", model or ""
