"""What the key administration tests share: a server secret, the models, a clock they move."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
