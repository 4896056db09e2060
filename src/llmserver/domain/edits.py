"""What an edit leaves alone (the marker of a setting an admin did not name), and the
changes a key's or a team's edit makes to the settings both have."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

from llmserver.domain.key_limits import LIMITS, check_limits


class Keep(Enum):
    """A setting an edit leaves as it is (``None`` means "no limit", so it cannot)."""

    KEEP = "keep"


KEEP = Keep.KEEP


def shared_changes(edit: Any, clean_name: Callable[[str], str]) -> dict[str, Any]:
    """The name (cleaned), limits (checked) and budget ``edit`` sets, by field name; what
    it leaves as it is (``Keep``) is left out."""
    changes: dict[str, Any] = {
        name: value for name, _, _ in LIMITS if not isinstance(value := getattr(edit, name), Keep)
    }
    check_limits(changes)
    if not isinstance(edit.name, Keep):
        changes["name"] = clean_name(edit.name)
    for setting in ("budget_nanodollars", "budget_window"):
        value = getattr(edit, setting)
        if not isinstance(value, Keep):
            changes[setting] = value
    return changes
