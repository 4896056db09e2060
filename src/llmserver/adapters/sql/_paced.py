"""Background deletes in batches, paced so that requests running beside them keep their
share of the machine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

PAUSE_RATIO = 1.0
"""After each batch, a pause as long as the batch took: background deletes then use at most
half of their connection's time and (on a small machine, where the database shares the
cores with the server) of a core. Flat out, retention's batched deletes halved the
completions a two-core machine served beside them (the retention soak)."""


async def paced_batches(step: Callable[[], Awaitable[tuple[int, bool]]]) -> int:
    """Run ``step`` (one short transaction; returns the rows it removed and whether more
    may remain) until no more remain; returns the rows removed in all."""
    removed = 0
    while True:
        started = time.monotonic()
        gone, more = await step()
        removed += gone
        if not more:
            return removed
        await asyncio.sleep((time.monotonic() - started) * PAUSE_RATIO)
