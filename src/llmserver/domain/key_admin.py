"""Key administration: the use cases behind ``llmserver keys`` and the admin API.

Pure domain code on the ``KeyStore`` / ``UsageStore`` ports. The plaintext of a new key
exists only in the return value of ``create``; stores only ever see its hash.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum

from llmserver.domain.errors import InvalidRequest, ModelNotFound, NotFound
from llmserver.domain.keys import ApiKey, KeyHasher, Role, generate_key, role_spec
from llmserver.domain.ports import Clock, KeyStore, UsageStore
from llmserver.domain.quota import UsageRecord
from llmserver.domain.registry import ModelRegistry

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.ASCII)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
MAX_LIFETIME_DAYS = 36_500
"""About 100 years: longer is "never" in practice, and an expiry date stays far inside what
datetimes and every database can hold (year 9999)."""
_MAX_LIFETIME_S = MAX_LIFETIME_DAYS * 86_400
MAX_QUOTA_TOKENS = 10**15
MAX_RPM = 10**9
"""Limits beyond these mean "unlimited" anyway; the columns (BIGINT, INTEGER) hold them."""
MAX_NAME_LENGTH = 200
"""The width of the name column."""
_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_ADD_ATTEMPTS = 3


class KeyState(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


def key_state(key: ApiKey, now: datetime) -> KeyState:
    if key.revoked_at is not None:
        return KeyState.REVOKED
    if key.expires_at is not None and key.expires_at <= now:
        return KeyState.EXPIRED
    return KeyState.ACTIVE


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


def allowed_model_ids(
    models: ModelRegistry, names: Sequence[str], *, allow_unknown: bool = False
) -> tuple[str, ...]:
    """The model ids a key may use, from ids or aliases: requests are checked against the
    resolved id, so a key naming an alias would be refused the very model it names.

    Unknown names are refused unless ``allow_unknown`` (a model configured later), in which
    case they are kept as given.
    """
    ids: list[str] = []
    unknown: list[str] = []
    for name in (n.strip() for n in names):
        if not name:
            continue
        if "\x00" in name:  # no model is named so, and PostgreSQL's JSONB cannot store it
            raise InvalidRequest(
                "A model name cannot contain a NUL character.", param="allowed_models"
            )
        try:
            ids.append(models.resolve(name).id)
        except ModelNotFound:
            (ids if allow_unknown else unknown).append(name)
    if unknown:
        served = ", ".join(sorted(models.by_id)) or "none"
        raise InvalidRequest(
            f"Unknown model {', '.join(repr(n[:100]) for n in unknown)} in allowed_models "
            f"(this server serves: {served}). To name a model configured later, allow "
            "unknown models (allow_unknown_models / --allow-unknown-models).",
            param="allowed_models",
            code="model_not_found",
        )
    return tuple(dict.fromkeys(ids))


class KeyAdmin:
    def __init__(
        self,
        keys: KeyStore,
        usage: UsageStore,
        hasher: KeyHasher,
        clock: Clock,
        models: ModelRegistry,
    ) -> None:
        self._keys = keys
        self._usage = usage
        self._hasher = hasher
        self._clock = clock
        self._models = models

    async def create(
        self,
        *,
        name: str,
        role: Role | str = Role.USER,
        quota_tokens: int | None = None,
        rpm_limit: int | None = None,
        allowed_models: Sequence[str] = (),
        expires_in: str | timedelta | None = None,
        allow_unknown_models: bool = False,
    ) -> tuple[ApiKey, str]:
        """Create a key; returns it with its plaintext, which is never retrievable again.

        Limits not given take the role's defaults (``RoleSpec``); ``allowed_models`` is
        stored as model ids (``allowed_model_ids``).
        """
        if not name.strip():
            raise InvalidRequest("A key needs a name.", param="name")
        if "\x00" in name:  # PostgreSQL text cannot hold it: the insert would fail (a 500)
            raise InvalidRequest("A key name cannot contain a NUL character.", param="name")
        if len(name.strip()) > MAX_NAME_LENGTH:
            raise InvalidRequest(
                f"A key name has at most {MAX_NAME_LENGTH} characters.", param="name"
            )
        try:
            spec = role_spec(Role(role))
        except ValueError:
            roles = ", ".join(r.value for r in Role)
            raise InvalidRequest(
                f"Unknown role {role!r}: use one of {roles}.", param="role"
            ) from None
        for limit, param, most in (
            (quota_tokens, "quota_tokens", MAX_QUOTA_TOKENS),
            (rpm_limit, "rpm_limit", MAX_RPM),
        ):
            if limit is not None and not 0 <= limit <= most:
                raise InvalidRequest(f"{param} must be between 0 and {most}.", param=param)
        if isinstance(expires_in, str):
            expires_in = parse_duration(expires_in)
        now = self._clock.now()
        models = allowed_model_ids(self._models, allowed_models, allow_unknown=allow_unknown_models)
        # A random 12-character prefix collides about never; if it does, the store
        # refuses the duplicate and a fresh key is drawn.
        failures = 0
        while True:
            issued = generate_key()
            key = ApiKey(
                id=uuid.uuid4().hex,
                name=name.strip(),
                prefix=issued.prefix,
                key_hash=self._hasher.hash(issued.plaintext),
                role=spec.name,
                created_at=now,
                quota_tokens=spec.default_quota_tokens if quota_tokens is None else quota_tokens,
                rpm_limit=spec.default_rpm if rpm_limit is None else rpm_limit,
                allowed_models=models,
                expires_at=None if expires_in is None else now + expires_in,
            )
            try:
                await self._keys.add(key)
            except ValueError:
                failures += 1
                if failures == _ADD_ATTEMPTS:
                    raise
                continue
            return key, issued.plaintext

    async def list(self) -> Sequence[ApiKey]:
        return await self._keys.list()

    async def find(self, id_or_prefix: str) -> ApiKey:
        key = await self._keys.get(id_or_prefix) or await self._keys.find_by_prefix(id_or_prefix)
        if key is None:
            raise NotFound(f"No API key with id or prefix '{id_or_prefix}'.", param="key_id")
        return key

    async def revoke(self, id_or_prefix: str) -> ApiKey:
        key = await self.find(id_or_prefix)
        revoked = await self._keys.revoke(key.id, self._clock.now())
        if revoked is None:
            raise NotFound(f"No API key with id or prefix '{id_or_prefix}'.", param="key_id")
        return revoked

    async def usage(
        self, id_or_prefix: str | None = None, period: str | None = None
    ) -> Sequence[UsageRecord]:
        if period is not None and not _PERIOD.match(period):
            raise InvalidRequest(f"Invalid period {period!r}: expected YYYY-MM.", param="period")
        key_id = None if id_or_prefix is None else (await self.find(id_or_prefix)).id
        return await self._usage.list(key_id=key_id, period=period)

    async def create_first_admin(self, name: str = "admin") -> tuple[ApiKey, str] | None:
        """Create an admin key if the store has no keys at all (first start)."""
        if await self._keys.list():
            return None
        return await self.create(name=name, role=Role.ADMIN)
