"""Writing a batch so that the rows a store rejects are set aside alone.

Background writers (the request-log batcher, the written-behind usage and cache) hand
their batches to ``write_isolating``. When the store raises ``RowsRejected`` (see
``sql._rejects`` for which database errors count), the batch is split in halves, each
written and split again on its own, until every rejected row stands alone and is
dead-lettered: reported to ``settled`` with its error, which logs it (``dead_letter``) and
counts it. With k bad rows among n that costs about 2k*log2(n) writes more; a good batch is
one write, as before.

Parts settle in row order, so what has settled is always a prefix of the batch. Any other
exception (an outage) propagates at once: the caller keeps the rows not settled yet and
retries them, as it always did.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import structlog

from llmserver.domain.ports import RowsRejected

log = structlog.get_logger(__name__)

Row = TypeVar("Row")


async def write_isolating(
    write: Callable[[Sequence[Row]], Awaitable[None]],
    rows: Sequence[Row],
    settled: Callable[[Sequence[Row], RowsRejected | None], None],
) -> None:
    """Write ``rows``; ``settled(part, None)`` for each part written and
    ``settled([row], error)`` for each row rejected, in row order."""
    try:
        await write(rows)
    except RowsRejected as exc:
        if len(rows) == 1:
            settled(rows, exc)
            return
        middle = len(rows) // 2
        await write_isolating(write, rows[:middle], settled)
        await write_isolating(write, rows[middle:], settled)
        return
    settled(rows, None)


def dead_letter(store: str, ids: Sequence[object], error: RowsRejected) -> None:
    """The one log line for rows set aside: which store, which rows, and why."""
    log.warning("rows_dead_lettered", store=store, rows=len(ids), ids=list(ids), error=str(error))
