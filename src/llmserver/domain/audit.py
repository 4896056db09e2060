"""The audit trail: who changed what through the admin API, and when.

An entry names its actor by the admin key's id and public prefix, never by anything secret;
its ``before``/``after`` hold a key's settings (``key_settings``), never its hash, and no
plaintext key ever reaches this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmserver.domain.keys import ApiKey
    from llmserver.domain.teams import Team

AUDIT_TARGET_MAX_CHARS = 200
"""The widest target an entry names: a key id (32) or a model id."""
AUDIT_ACTION_MAX_CHARS = 32
CLI_ACTOR = "cli"
"""The actor of changes made with ``llmserver keys``, straight on the database: no admin
key is involved to name."""

Settings = Mapping[str, object]
"""A JSON object of plain values (strings, numbers, lists, null): a key's settings."""


class AuditAction(StrEnum):
    KEY_CREATE = "key.create"
    KEY_UPDATE = "key.update"
    KEY_REVOKE = "key.revoke"
    KEY_ROTATE = "key.rotate"
    TEAM_CREATE = "team.create"
    TEAM_UPDATE = "team.update"
    CACHE_PURGE = "cache.purge"


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEvent:
    """One admin action, as recorded."""

    at: datetime
    action: AuditAction
    actor_key_id: str
    actor_prefix: str
    target: str | None = None
    before: Settings | None = None
    after: Settings | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry(AuditEvent):
    """A recorded event with the id the trail gave it (ids grow with time)."""

    id: int


@dataclass(frozen=True, slots=True)
class AuditQuery:
    action: AuditAction | None = None
    actor_key_id: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    offset: int = 0


def key_settings(key: ApiKey) -> dict[str, object]:
    """What an entry shows of a key: its settings by name. Listed field by field on
    purpose, so that a field added to ``ApiKey`` (a hash, a secret) stays out until
    someone decides it belongs here."""
    return {
        "name": key.name,
        "prefix": key.prefix,
        "role": key.role.value,
        "quota_tokens": key.quota_tokens,
        "rpm_limit": key.rpm_limit,
        "tpm_limit": key.tpm_limit,
        "max_parallel": key.max_parallel,
        "allowed_models": list(key.allowed_models),
        "model_limits": {limit.model_id: limit.limits() for limit in key.model_limits},
        "expires_at": None if key.expires_at is None else key.expires_at.isoformat(),
        "revoked_at": None if key.revoked_at is None else key.revoked_at.isoformat(),
        "budget_nanodollars": key.budget_nanodollars,
        "budget_window": key.budget_window.value,
        "team_id": key.team_id,
    }


def team_settings(team: Team) -> dict[str, object]:
    """What an entry shows of a team: its settings by name (listed as ``key_settings``)."""
    return {
        "name": team.name,
        "quota_tokens": team.quota_tokens,
        "rpm_limit": team.rpm_limit,
        "tpm_limit": team.tpm_limit,
        "max_parallel": team.max_parallel,
        "budget_nanodollars": team.budget_nanodollars,
        "budget_window": team.budget_window.value,
    }


def changed_only(before: Settings, after: Settings) -> tuple[Settings, Settings]:
    """The settings that differ, before and after: an update's entry shows what moved."""
    names = [n for n in after if before.get(n) != after[n]]
    return {n: before.get(n) for n in names}, {n: after[n] for n in names}


@dataclass(frozen=True, slots=True)
class KeyChange:
    """What an entry records of a change to a key."""

    action: AuditAction
    target: str
    before: Settings | None
    after: Settings | None


def key_change(
    action: AuditAction, before: ApiKey | None, after: ApiKey, **extra: object
) -> KeyChange | None:
    """A created key's settings (``before`` is ``None``), or the settings a change moved,
    with ``extra`` facts added to the after side; ``None`` when nothing moved (revoking a
    revoked key, an edit to the same values): nothing happened, nothing to record."""
    if before is None:
        return KeyChange(action, after.id, None, {**key_settings(after), **extra})
    old, new = changed_only(key_settings(before), key_settings(after))
    if not new and not extra:
        return None
    return KeyChange(action, after.id, old, {**new, **extra})


def team_change(action: AuditAction, before: Team | None, after: Team) -> KeyChange | None:
    """``key_change`` for a team: a created team's settings, or those an edit moved;
    ``None`` when nothing moved."""
    if before is None:
        return KeyChange(action, after.id, None, team_settings(after))
    old, new = changed_only(team_settings(before), team_settings(after))
    return KeyChange(action, after.id, old, new) if new else None
