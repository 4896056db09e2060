"""Tokens per minute: the RPM's sliding-window log (``ratelimit``), weighted by tokens and
held as reservations.

A request at ``t`` is admitted iff the tokens of the key's entries in ``(t - 60 s, t]``
plus its own reservation (prompt + max_tokens) fit the limit; the entry is then recorded
at ``t`` with the reserved tokens. Settling shrinks the entry to the tokens the request
really used (never more than it reserved); releasing removes it. So the entries of any
60-second window never add up to more than the limit, whether they are still held or
settled, and a settled window holds exactly the tokens the requests used. An entry settled
to nothing holds nothing; a store may drop it (a cache hit's, by default charged nothing,
would otherwise stay its minute).

Entries are attributed to the instant they were admitted: a request that runs past the
end of its window still counts in the window it was admitted in (the only instant the
limit can be checked before any work is done). ``Retry-After`` is exact: the moment
enough of the oldest entries have left the window for the refused reservation to fit.

The pure rule lives here; stores keep the entries (in memory, or in Redis through a Lua
script implementing the same rule atomically).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llmserver.domain.ratelimit import WINDOW_MS, RateDecision


# Not frozen: built on every request's path of a TPM key (see ``RequestLog``).
@dataclass(slots=True)
class TokenHold:
    """A TPM window entry held by one request, handed back to settle or release it."""

    bucket: str
    entry: str
    """The entry's id, unique in its bucket."""
    tokens: int
    """What it reserved."""


# Not frozen: built on every request's path of a TPM key.
@dataclass(slots=True)
class TokenReservation:
    """A store's answer: the decision, and the hold when admitted."""

    decision: RateDecision
    hold: TokenHold | None


def decide_tokens(
    window: Sequence[Sequence[int]], held: int, now_ms: int, limit: int, tokens: int
) -> RateDecision:
    """Decide a reservation of ``tokens`` at ``now_ms``, given the bucket's live entries
    ``(admitted_at_ms, tokens, ...)`` oldest first (the store expires older ones) and their
    sum ``held``.

    Constant time when admitted; a refusal walks only the oldest entries that hold its
    excess (a Redis script walks them too, so a refusal never reads the whole window).
    ``remaining`` is what the window leaves free after the decision.
    """
    if not 1 <= tokens <= limit:
        raise ValueError("a TPM reservation takes from 1 token to the whole limit")
    if held + tokens <= limit:
        # Positional, as ``decide_window``'s: this runs on every admitted request.
        return RateDecision(True, limit, limit - held - tokens, 0, WINDOW_MS)
    # Admissible once the oldest entries holding the excess have left the window.
    excess = held + tokens - limit
    retry_after_ms = 0
    for entry in window:
        excess -= entry[1]
        retry_after_ms = entry[0] + WINDOW_MS - now_ms
        if excess <= 0:
            break
    # The window is free for a full burst once its newest entry holding tokens has left:
    # an entry settled to nothing holds none (stores may drop such entries, or keep them).
    # A refusal means some entry holds tokens, as ``tokens`` alone fits the limit.
    newest = next(entry[0] for entry in reversed(window) if entry[1] > 0)
    return RateDecision(
        admitted=False,
        limit=limit,
        remaining=max(0, limit - held),
        retry_after_ms=retry_after_ms,
        reset_after_ms=newest + WINDOW_MS - now_ms,
    )
