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

from llmserver.domain.errors import InvalidRequest, NotFound
from llmserver.domain.keys import ApiKey, KeyHasher, Role, generate_key, role_spec
from llmserver.domain.ports import Clock, KeyStore, UsageStore
from llmserver.domain.quota import UsageRecord

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
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
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"`` or ``"2w"`` as a positive timedelta."""
    match = _DURATION.match(text)
    if match is None or int(match[1]) == 0:
        raise InvalidRequest(
            f"Invalid duration {text!r}: expected a positive number and a unit, "
            "such as 30d, 12h, 90m, 45s or 2w.",
            param="expires_in",
        )
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


class KeyAdmin:
    def __init__(self, keys: KeyStore, usage: UsageStore, hasher: KeyHasher, clock: Clock) -> None:
        self._keys = keys
        self._usage = usage
        self._hasher = hasher
        self._clock = clock

    async def create(
        self,
        *,
        name: str,
        role: Role | str = Role.USER,
        quota_tokens: int | None = None,
        rpm_limit: int | None = None,
        allowed_models: Sequence[str] = (),
        expires_in: str | timedelta | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; returns it with its plaintext, which is never retrievable again.

        Limits not given take the role's defaults (``RoleSpec``).
        """
        if not name.strip():
            raise InvalidRequest("A key needs a name.", param="name")
        try:
            spec = role_spec(Role(role))
        except ValueError:
            roles = ", ".join(r.value for r in Role)
            raise InvalidRequest(
                f"Unknown role {role!r}: use one of {roles}.", param="role"
            ) from None
        for limit, param in ((quota_tokens, "quota_tokens"), (rpm_limit, "rpm_limit")):
            if limit is not None and limit < 0:
                raise InvalidRequest(f"{param} cannot be negative.", param=param)
        if isinstance(expires_in, str):
            expires_in = parse_duration(expires_in)
        now = self._clock.now()
        models = tuple(dict.fromkeys(m.strip() for m in allowed_models if m.strip()))
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
