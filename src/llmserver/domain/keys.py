"""API keys: generation, keyed hashing, roles and the key record.

A key reads ``llms_<prefix>_<secret>``. The prefix is public (it identifies the key in
logs and admin listings); only an HMAC-SHA256 of the whole key under the server secret
is ever stored, and verification compares digests in constant time.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from llmserver.domain.budget import BudgetWindow
from llmserver.domain.errors import AuthReason, Unauthenticated
from llmserver.domain.key_limits import ModelLimit, check_record_limits

KEY_SCHEME = "llms"
PREFIX_CHARS = 12
SECRET_BYTES = 32
MIN_SERVER_SECRET_CHARS = 32
MIN_SERVER_SECRET_DISTINCT = 10
"""A long secret made of a few repeated characters ("aaaa...", "changeme" x 4) is weak."""
MIN_KEY_SECRET_CHARS = 16
_PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_URLSAFE_CLASS = "A-Za-z0-9_-"
"""What ``secrets.token_urlsafe`` produces (so the secret may itself contain "_")."""
_KEY_SHAPE = re.compile(
    rf"{KEY_SCHEME}_([{_PREFIX_ALPHABET}]{{{PREFIX_CHARS}}})"
    rf"_[{_URLSAFE_CLASS}]{{{MIN_KEY_SECRET_CHARS},}}"
)
"""``llms_<prefix>_<secret>``: the prefix from ``_PREFIX_ALPHABET``, a long enough secret."""


class Role(StrEnum):
    ADMIN = "admin"
    USER = "user"
    PLAYGROUND = "playground"


@dataclass(frozen=True, slots=True)
class RoleSpec:
    """A role and the limits a new key of that role gets when none are given."""

    name: Role
    description: str
    default_rpm: int | None
    default_quota_tokens: int | None


DEFAULT_ROLES: tuple[RoleSpec, ...] = (
    RoleSpec(Role.ADMIN, "Full access, including the admin API.", None, None),
    RoleSpec(Role.USER, "Inference API only.", 60, 1_000_000),
    RoleSpec(
        Role.PLAYGROUND, "Inference API for the browser playground, tight limits.", 10, 100_000
    ),
)


def role_spec(role: Role) -> RoleSpec:
    return next(spec for spec in DEFAULT_ROLES if spec.name is role)


EDITABLE_KEY_FIELDS = (
    "name",
    "quota_tokens",
    "rpm_limit",
    "tpm_limit",
    "max_parallel",
    "allowed_models",
    "expires_at",
    "budget_nanodollars",
    "budget_window",
    "model_limits",
    "team_id",
)
"""The settings an admin may change on an existing key."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    key_hash: str
    role: Role
    created_at: datetime
    quota_tokens: int | None = None
    rpm_limit: int | None = None
    allowed_models: tuple[str, ...] = ()
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    tpm_limit: int | None = None
    """Tokens (prompt + completion) per minute, reserved as prompt + max_tokens."""
    max_parallel: int | None = None
    """Requests in flight at once."""
    budget_nanodollars: int | None = None
    """Spend limit per ``budget_window`` (``domain.budget``); ``None``: no budget."""
    budget_window: BudgetWindow = BudgetWindow.MONTH
    model_limits: tuple[ModelLimit, ...] = ()
    """Per-model RPM/TPM caps on top of the key's own, one per model id, sorted by it."""
    team_id: str | None = None
    """The team (``domain.teams``) whose limits cap this key's too; ``None``: none."""

    def __post_init__(self) -> None:
        check_record_limits(self)

    def may_use(self, model_id: str) -> bool:
        return not self.allowed_models or model_id in self.allowed_models

    def model_limit(self, model_id: str) -> ModelLimit | None:
        """The key's own limits on ``model_id``; callers test ``model_limits`` first, so a
        key without any pays one tuple test."""
        return next((m for m in self.model_limits if m.model_id == model_id), None)

    def revoked(self, at: datetime) -> ApiKey:
        return replace(self, revoked_at=at)

    def with_settings_of(self, other: ApiKey) -> ApiKey:
        """This key with ``other``'s editable settings."""
        return replace(self, **{name: getattr(other, name) for name in EDITABLE_KEY_FIELDS})


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A freshly generated key: the plaintext exists only here, to be shown once."""

    plaintext: str
    prefix: str


class WeakServerSecret(ValueError):
    pass


class KeyHasher:
    """Keyed hashing of API keys with the server secret."""

    def __init__(self, server_secret: str) -> None:
        if (
            len(server_secret) < MIN_SERVER_SECRET_CHARS
            or len(set(server_secret)) < MIN_SERVER_SECRET_DISTINCT
        ):
            raise WeakServerSecret(
                f"the server secret must be at least {MIN_SERVER_SECRET_CHARS} characters "
                f"with at least {MIN_SERVER_SECRET_DISTINCT} different ones; "
                "generate one with generate_server_secret()"
            )
        # Keyed once: each hash copies this state (2.4 us) instead of keying HMAC anew
        # (hmac.digest, 4.6 us, most of it OpenSSL 3 looking up SHA-256), on every request.
        self._keyed = hmac.new(server_secret.encode("utf-8", "surrogatepass"), digestmod="sha256")

    def hash(self, plaintext: str) -> str:
        # surrogatepass keeps hashing total for any str a header decoder may hand over;
        # it encodes every valid string exactly as strict UTF-8 does.
        mac = self._keyed.copy()
        mac.update(plaintext.encode("utf-8", "surrogatepass"))
        return mac.hexdigest()

    def verify(self, plaintext: str, key_hash: str) -> bool:
        return hmac.compare_digest(self.hash(plaintext), key_hash)


def generate_key() -> IssuedKey:
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_CHARS))
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return IssuedKey(plaintext=f"{KEY_SCHEME}_{prefix}_{secret}", prefix=prefix)


def parse_prefix(plaintext: str) -> str:
    """Return the public prefix of a presented key, or refuse it as malformed."""
    match = _KEY_SHAPE.fullmatch(plaintext)
    if match is None:
        raise Unauthenticated(AuthReason.MALFORMED)
    return match[1]


def generate_server_secret() -> str:
    return secrets.token_urlsafe(48)
