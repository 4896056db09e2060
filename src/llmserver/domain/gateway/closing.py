"""Closing every hold a request took, each even when one before it failed.

A client that leaves cancels its request's task once, at whichever await it is in; the
holds still to close after that await must close all the same (a Redis store's command
runs even when its caller is cancelled, so the one cancelled is closed too: every store's
close takes effect once called, and what it awaits after that is its answer). Nested
``try``/``finally`` blocks say the same, one level deeper per hold."""

from __future__ import annotations

from collections.abc import Awaitable


async def close_all(*closes: Awaitable[None] | None) -> None:
    """Await each of ``closes`` in order (``None``: nothing to close there), every one even
    after another raised; then raise the first error, a cancellation included."""
    error: BaseException | None = None
    for close in closes:
        if close is None:
            continue
        try:
            await close
        except BaseException as exc:
            if error is None:
                error = exc
    if error is not None:
        raise error
