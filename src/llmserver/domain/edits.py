"""What an edit leaves alone: the marker of a setting an admin did not name."""

from __future__ import annotations

from enum import Enum


class Keep(Enum):
    """A setting an edit leaves as it is (``None`` means "no limit", so it cannot)."""

    KEEP = "keep"


KEEP = Keep.KEEP
