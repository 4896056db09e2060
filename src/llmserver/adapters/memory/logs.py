from __future__ import annotations

from collections.abc import Sequence

from llmserver.domain.logs import LogQuery, RequestLog
from llmserver.domain.ports import RequestLogReader, RequestLogSink


class MemoryRequestLogStore(RequestLogSink, RequestLogReader):
    """Request-log sink and reader in process memory (bounded: oldest rows drop first)."""

    def __init__(self, max_rows: int = 100_000) -> None:
        self._rows: list[RequestLog] = []
        self._max = max_rows

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
        ]
        return matching[query.offset : query.offset + query.limit], len(matching)
