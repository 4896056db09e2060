"""Label values kept to a bounded set, so no caller can grow a metric's series without
end: a value past the set is counted under ``other``."""

from __future__ import annotations

import threading
from collections.abc import Iterable

OTHER = "other"
"""The label value every unknown or over-the-cap value is folded into."""

_FREE_LABEL_LIMIT = 32
"""Distinct values a label without a known value set may take before folding into ``other``
(routes, refusal causes, error kinds, Redis components: each a short, code-defined list)."""


class BoundedLabel:
    """Maps free-form label values onto a bounded set.

    With ``allowed``, exactly those values pass. Without, the first ``limit`` distinct values
    pass: enough for code-defined names, and a hard stop if a caller ever passes data.
    """

    def __init__(self, allowed: Iterable[str] | None = None, limit: int = _FREE_LABEL_LIMIT):
        self._fixed = allowed is not None
        self._seen: set[str] = set(allowed or ())
        self._limit = limit
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if self._fixed:
            return OTHER
        with self._lock:
            if value not in self._seen and len(self._seen) >= self._limit:
                return OTHER
            self._seen.add(value)
        return value


def status_class(status: int) -> str:
    """``404`` -> ``4xx``; anything outside 100..599 is ``other``."""
    return f"{status // 100}xx" if 100 <= status <= 599 else OTHER
