from __future__ import annotations

import time
from datetime import UTC, datetime

from llmserver.domain.ports import Clock


class SystemClock(Clock):
    """The real clock (the domain's ``Clock`` port)."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()
