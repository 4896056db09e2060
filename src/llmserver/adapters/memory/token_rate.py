from __future__ import annotations

from bisect import insort
from collections import deque
from itertools import count

from llmserver.domain.ports import TokenRateStore
from llmserver.domain.ratelimit import WINDOW_MS
from llmserver.domain.token_rate import TokenHold, TokenReservation, decide_tokens

Entry = list[int]
"""``[admitted_at_ms, tokens, id]``: mutable, as settling shrinks it."""


class _Window:
    __slots__ = ("by_id", "entries", "held")

    def __init__(self) -> None:
        self.entries: deque[Entry] = deque()
        """Oldest first."""
        self.by_id: dict[int, Entry] = {}
        self.held = 0
        """The entries' tokens, summed."""

    def expire(self, now_ms: int) -> None:
        entries = self.entries
        while entries and entries[0][0] <= now_ms - WINDOW_MS:
            _, tokens, entry = entries.popleft()
            self.held -= tokens
            del self.by_id[entry]


class MemoryTokenRateStore(TokenRateStore):
    """Per-process TPM windows: the entries of each bucket, oldest first, with their sum
    kept as they change, so an admission costs O(1) (a refusal walks the window for its
    retry time)."""

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}
        self._ids = count()

    async def reserve(self, bucket: str, limit: int, tokens: int, now_ms: int) -> TokenReservation:
        window = self._windows.get(bucket)
        if window is None:
            window = self._windows[bucket] = _Window()
        entries = window.entries
        if entries and entries[0][0] <= now_ms - WINDOW_MS:  # most requests expire nothing
            window.expire(now_ms)
        decision = decide_tokens(window.entries, window.held, now_ms, limit, tokens)
        if not decision.admitted:
            return TokenReservation(decision, None)
        entry = next(self._ids)
        record = [now_ms, tokens, entry]
        if not entries or entries[-1][0] <= now_ms:
            entries.append(record)
        else:  # the wall clock stepped back: keep the window sorted
            insort(entries, record)
        window.by_id[entry] = record
        window.held += tokens
        return TokenReservation(decision, TokenHold(bucket, str(entry), tokens))

    async def settle(self, hold: TokenHold, used: int) -> None:
        window = self._windows.get(hold.bucket)
        if window is None:
            return
        entry = int(hold.entry)
        record = window.by_id.get(entry)
        if record is None or used >= record[1]:  # never more than it reserved
            return
        kept = used if used > 0 else 0
        window.held -= record[1] - kept
        record[1] = kept
        if not kept and window.entries[-1] is record:
            # An entry of no tokens changes no decision, and the newest leaves in O(1): a
            # cache hit's (charged nothing, settled in the turn it was taken) would
            # otherwise stay a minute, 360,000 of them in one hot key's window at 6,000
            # hits a second.
            window.entries.pop()
            del window.by_id[entry]

    async def release(self, hold: TokenHold) -> None:
        window = self._windows.get(hold.bucket)
        record = None if window is None else window.by_id.pop(int(hold.entry), None)
        if window is not None and record is not None:
            window.held -= record[1]
            window.entries.remove(record)
            if not window.entries:
                del self._windows[hold.bucket]

    def entries(self, bucket: str) -> int:
        """How many entries the bucket's window keeps (for tests)."""
        window = self._windows.get(bucket)
        return 0 if window is None else len(window.entries)

    def held(self, bucket: str, now_ms: int) -> int:
        """The tokens the bucket's window holds at ``now_ms`` (for tests and the property
        checks)."""
        window = self._windows.get(bucket)
        if window is None:
            return 0
        window.expire(now_ms)
        return window.held
