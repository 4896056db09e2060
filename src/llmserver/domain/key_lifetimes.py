"""How long keys live: the expiry a new key is given, and the grace period a rotated
key's old secret keeps working (with the rotation's audit record)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from llmserver.domain.audit import AuditAction, KeyChange, key_change
from llmserver.domain.errors import InvalidRequest
from llmserver.domain.keys import ApiKey

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.ASCII)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
MAX_LIFETIME_DAYS = 36_500
"""About 100 years: longer is "never" in practice, and an expiry date stays far inside what
datetimes and every database can hold (year 9999)."""
_MAX_LIFETIME_S = MAX_LIFETIME_DAYS * 86_400


def parse_duration(text: str) -> timedelta:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"`` or ``"2w"`` as a positive timedelta of at
    most ``MAX_LIFETIME_DAYS``."""
    match = _DURATION.match(text)
    if match is None or not (digits := match[1].lstrip("0")):
        raise InvalidRequest(
            f"Invalid duration {text[:40]!r}: expected a positive number and a unit, "
            "such as 30d, 12h, 90m, 45s or 2w.",
            param="expires_in",
        )
    # Digits are counted before int(): it refuses over 4300 of them, and a lifetime that
    # long would overflow timedelta and datetime (a 500) long before that.
    seconds_per_unit = _UNIT_SECONDS[match[2]]
    if len(digits) > 12 or int(digits) * seconds_per_unit > _MAX_LIFETIME_S:
        raise InvalidRequest(
            f"Duration {text[:40]!r} is too long: at most {MAX_LIFETIME_DAYS}d (about 100 "
            "years). Leave it out for a key that never expires.",
            param="expires_in",
        )
    return timedelta(seconds=int(digits) * seconds_per_unit)


MAX_GRACE = timedelta(days=30)
"""The longest an old key keeps working after a rotation."""
DEFAULT_GRACE = timedelta(hours=24)
"""Long enough for every client to pick up the new key in a day's deploy, short enough
that a leaked key, the usual reason to rotate, does not stay usable for long."""


@dataclass(frozen=True, slots=True)
class Rotation:
    old_before: ApiKey
    old_after: ApiKey
    """The old key, now expiring at the end of the grace period (or revoked, with none)."""
    new: ApiKey
    plaintext: str
    """The new key's secret, shown once."""


def parse_grace(text: str) -> timedelta:
    """A rotation's grace period: ``0`` (revoke at once) or a duration of at most 30d."""
    if re.fullmatch(r"\s*0+\s*[smhdw]?\s*", text, re.ASCII):
        return timedelta(0)
    try:
        grace = parse_duration(text)
    except InvalidRequest:
        grace = None
    if grace is None or grace > MAX_GRACE:
        raise InvalidRequest(
            f"Invalid grace period {text[:40]!r}: expected 0 (revoke the old key at once) or "
            f"a duration of at most {MAX_GRACE.days}d, such as 24h or 15m.",
            param="grace_period",
        )
    return grace


def rotation_change(rotation: Rotation) -> KeyChange | None:
    """A rotation's audit record: on the old key, naming its replacement."""
    return key_change(
        AuditAction.KEY_ROTATE,
        rotation.old_before,
        rotation.old_after,
        replaced_by=rotation.new.id,
        replaced_by_prefix=rotation.new.prefix,
    )
