"""What the key administration tests share: a server secret, the models, a clock they move,
a ledger that counts its reads."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from llmserver.adapters.memory.usage import MemoryUsageStore
from llmserver.domain.quota import UsageRecord
from llmserver.domain.registry import BackendKind, ModelRegistry, ModelSpec

SECRET = "test-secret-0123456789-abcdefghijklmnop"
MODELS = ModelRegistry(
    [
        ModelSpec(id="tiny", backend=BackendKind.HTTP, source="http://127.0.0.1:9"),
        ModelSpec(
            id="demo-tiny-llama",
            aliases=("demo",),
            backend=BackendKind.HTTP,
            source="http://127.0.0.1:9",
        ),
    ]
)


class FakeClock:
    def __init__(self) -> None:
        self._now = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._now.timestamp()

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


class CountedLedger(MemoryUsageStore):
    """Counts the reads a listing makes."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: Counter[str] = Counter()

    async def get(self, key_id: str, period: str) -> UsageRecord:
        self.reads["get"] += 1
        return await super().get(key_id, period)

    async def list(
        self, *, key_id: str | None = None, period: str | None = None
    ) -> Sequence[UsageRecord]:
        self.reads["list"] += 1
        return await super().list(key_id=key_id, period=period)
