from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

from llmserver.domain.audit import AuditEntry, AuditEvent, AuditQuery
from llmserver.domain.ports import AuditLog


class MemoryAuditLog(AuditLog):
    """The audit trail in process memory (lost on restart; for tests and tools)."""

    def __init__(self) -> None:
        self._entries: list[AuditEntry] = []

    async def record(self, event: AuditEvent) -> AuditEntry:
        entry = AuditEntry(id=len(self._entries) + 1, **asdict(event))
        self._entries.append(entry)
        return entry

    async def query(self, query: AuditQuery) -> tuple[Sequence[AuditEntry], int]:
        matching = [
            e
            for e in reversed(self._entries)
            if (query.action is None or e.action is query.action)
            and (query.actor_key_id is None or e.actor_key_id == query.actor_key_id)
            and (query.target is None or e.target == query.target)
            and (query.since is None or e.at >= query.since)
            and (query.until is None or e.at < query.until)
        ]
        return matching[query.offset : query.offset + query.limit], len(matching)
