from __future__ import annotations

from llmserver.domain.ports import ParallelStore


class MemoryParallelStore(ParallelStore):
    """Requests in flight per bucket, in this process."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}

    async def acquire(self, bucket: str, limit: int) -> bool:
        held = self._held.get(bucket, 0)
        if held >= limit:
            return False
        self._held[bucket] = held + 1
        return True

    async def release(self, bucket: str) -> None:
        held = self._held.get(bucket, 0) - 1
        if held > 0:
            self._held[bucket] = held
        else:
            self._held.pop(bucket, None)

    def held(self, bucket: str) -> int:
        """Slots held now (for tests and the property checks)."""
        return self._held.get(bucket, 0)
