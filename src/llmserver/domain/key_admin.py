"""Key administration: the use cases behind ``llmserver keys`` and the admin API.

Pure domain code on the ``KeyStore`` / ``UsageStore`` ports. The plaintext of a new key
exists only in the return value of ``create``; stores only ever see its hash.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from llmserver.domain.budget import BudgetWindow, KeyBudget
from llmserver.domain.budget_status import BudgetStatus, budget_statuses
from llmserver.domain.edits import KEEP, Keep, shared_changes
from llmserver.domain.errors import InvalidRequest, NotFound
from llmserver.domain.key_lifetimes import (
    DEFAULT_GRACE,
    MAX_LIFETIME_DAYS,
    Rotation,
    parse_duration,
)
from llmserver.domain.key_limits import check_limits
from llmserver.domain.key_models import ModelLimitsEdit, allowed_model_ids, edited_model_limits
from llmserver.domain.keys import ApiKey, KeyHasher, Role, generate_key, role_spec
from llmserver.domain.model_quota_status import ModelQuotaStatus, model_quota_statuses
from llmserver.domain.ports import Clock, KeyStore, TeamStore, UsageStore
from llmserver.domain.quota import UsageRecord
from llmserver.domain.registry import ModelRegistry
from llmserver.domain.team_admin import find_team
from llmserver.domain.teams import TEAM_LEDGER_PREFIX

MAX_NAME_LENGTH = 200
"""The width of the name column."""
_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_ADD_ATTEMPTS = 3
_NO_MODEL_LIMITS: Mapping[str, None] = {}
_NO_BUDGET = KeyBudget()


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


def key_matches(
    key: ApiKey,
    now: datetime,
    *,
    text: str | None = None,
    state: KeyState | None = None,
    role: Role | None = None,
) -> bool:
    """Whether a key passes a listing's filters: ``text`` found (ignoring case) in its name,
    prefix or id; its state; its role."""
    if state is not None and key_state(key, now) is not state:
        return False
    if role is not None and key.role is not role:
        return False
    if text:
        needle = text.strip().casefold()
        return any(needle in field.casefold() for field in (key.name, key.prefix, key.id))
    return True


def _clean_name(name: str) -> str:
    if not name.strip():
        raise InvalidRequest("A key needs a name.", param="name")
    if "\x00" in name:  # PostgreSQL text cannot hold it: the insert would fail (a 500)
        raise InvalidRequest("A key name cannot contain a NUL character.", param="name")
    if len(name.strip()) > MAX_NAME_LENGTH:
        raise InvalidRequest(f"A key name has at most {MAX_NAME_LENGTH} characters.", param="name")
    return name.strip()


@dataclass(frozen=True, slots=True)
class KeyEdit:
    """What an edit changes; every field left at ``KEEP`` stays."""

    name: str | Keep = KEEP
    quota_tokens: int | Keep | None = KEEP
    rpm_limit: int | Keep | None = KEEP
    tpm_limit: int | Keep | None = KEEP
    max_parallel: int | Keep | None = KEEP
    allowed_models: Sequence[str] | Keep = KEEP
    expires_at: datetime | Keep | None = KEEP
    budget_nanodollars: int | Keep | None = KEEP
    budget_window: BudgetWindow | Keep = KEEP
    model_limits: ModelLimitsEdit | Keep = KEEP
    """Per model (id or alias): its limits by name, or ``None`` to remove them; models not
    named keep theirs (``key_models.edited_model_limits``)."""
    team: str | Keep | None = KEEP
    """The team to move the key to, by id or name; ``None``: out of any team."""
    allow_unknown_models: bool = False


class KeyAdmin:
    def __init__(
        self,
        keys: KeyStore,
        usage: UsageStore,
        hasher: KeyHasher,
        clock: Clock,
        models: ModelRegistry,
        budget: UsageStore,
        model_quota: UsageStore,
        teams: TeamStore,
    ) -> None:
        """``usage``: the quota's ledger; ``budget``: the budgets'; ``model_quota``: the
        per-model quotas'; ``teams``: where a key's team is found by id or name."""
        self._keys = keys
        self._teams = teams
        self._usage = usage
        self._budget = budget
        self._model_quota = model_quota
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
        tpm_limit: int | None = None,
        max_parallel: int | None = None,
        allowed_models: Sequence[str] = (),
        expires_in: str | timedelta | None = None,
        allow_unknown_models: bool = False,
        budget: KeyBudget = _NO_BUDGET,
        model_limits: ModelLimitsEdit = _NO_MODEL_LIMITS,
        team: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; returns it with its plaintext, which is never retrievable again.

        Limits not given take the role's defaults (``RoleSpec``); ``allowed_models`` is
        stored as model ids (``allowed_model_ids``).
        """
        name = _clean_name(name)
        try:
            spec = role_spec(Role(role))
        except ValueError:
            roles = ", ".join(r.value for r in Role)
            raise InvalidRequest(
                f"Unknown role {role!r}: use one of {roles}.", param="role"
            ) from None
        limits = {
            "quota_tokens": quota_tokens,
            "rpm_limit": rpm_limit,
            "tpm_limit": tpm_limit,
            "max_parallel": max_parallel,
        }
        check_limits(limits)
        if isinstance(expires_in, str):
            expires_in = parse_duration(expires_in)
        now = self._clock.now()
        models = allowed_model_ids(self._models, allowed_models, allow_unknown=allow_unknown_models)
        template = ApiKey(
            id="",
            name=name,
            prefix="",
            key_hash="",
            role=spec.name,
            created_at=now,
            quota_tokens=spec.default_quota_tokens if quota_tokens is None else quota_tokens,
            rpm_limit=spec.default_rpm if rpm_limit is None else rpm_limit,
            tpm_limit=tpm_limit,
            max_parallel=max_parallel,
            allowed_models=models,
            expires_at=None if expires_in is None else now + expires_in,
            budget_nanodollars=budget.nanodollars,
            budget_window=budget.window,
            model_limits=edited_model_limits(
                self._models, (), model_limits, allow_unknown=allow_unknown_models
            ),
            team_id=await self._team_id(team),
        )
        return await self._issue(template)

    async def _team_id(self, team: str | None) -> str | None:
        return None if team is None else (await find_team(self._teams, team)).id

    async def _issue(self, template: ApiKey) -> tuple[ApiKey, str]:
        """Store a key with ``template``'s settings under a fresh id, prefix and secret."""
        # A random 12-character prefix collides about never; if it does, the store
        # refuses the duplicate and a fresh key is drawn.
        failures = 0
        while True:
            issued = generate_key()
            key = replace(
                template,
                id=uuid.uuid4().hex,
                prefix=issued.prefix,
                key_hash=self._hasher.hash(issued.plaintext),
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

    async def update(self, id_or_prefix: str, edit: KeyEdit) -> tuple[ApiKey, ApiKey]:
        """Change a key's settings; returns it before and after. A revoked key can be
        edited (nothing brings it back); the role cannot change (make a new key)."""
        changes = shared_changes(edit, _clean_name)
        before = await self.find(id_or_prefix)
        wanted = replace(before, **changes)
        if not isinstance(edit.allowed_models, Keep):
            models = allowed_model_ids(
                self._models, edit.allowed_models, allow_unknown=edit.allow_unknown_models
            )
            wanted = replace(wanted, allowed_models=models)
        if not isinstance(edit.expires_at, Keep):
            wanted = replace(wanted, expires_at=self._checked_expiry(edit.expires_at))
        if not isinstance(edit.model_limits, Keep):
            limits_after = edited_model_limits(
                self._models,
                before.model_limits,
                edit.model_limits,
                allow_unknown=edit.allow_unknown_models,
            )
            wanted = replace(wanted, model_limits=limits_after)
        if not isinstance(edit.team, Keep):
            wanted = replace(wanted, team_id=await self._team_id(edit.team))
        after = await self._keys.update(wanted)
        if after is None:
            raise NotFound(f"No API key with id or prefix '{id_or_prefix}'.", param="key_id")
        return before, after

    def _checked_expiry(self, at: datetime | None) -> datetime | None:
        if at is None:
            return at
        if at.tzinfo is None:
            raise InvalidRequest("expires_at needs a UTC offset.", param="expires_at")
        # Bounded both ways: the database stores UTC, and a time near year 1 or 9999 in
        # another zone has no UTC form (an overflow, a 500).
        if at <= self._clock.now():
            raise InvalidRequest(
                "expires_at is not in the future; revoke the key to end it now.",
                param="expires_at",
            )
        if at - self._clock.now() > timedelta(days=MAX_LIFETIME_DAYS):
            raise InvalidRequest(
                f"expires_at is more than {MAX_LIFETIME_DAYS} days away; leave it null for a "
                "key that never expires.",
                param="expires_at",
            )
        return at

    async def rotate(self, id_or_prefix: str, grace: timedelta = DEFAULT_GRACE) -> Rotation:
        """A new key with the old one's settings; the old one expires after ``grace``
        (sooner if it was going to anyway), or is revoked at once when ``grace`` is zero."""
        old = await self.find(id_or_prefix)
        if key_state(old, self._clock.now()) is not KeyState.ACTIVE:
            raise InvalidRequest(
                f"Key '{old.prefix}' is {key_state(old, self._clock.now()).value}: only an "
                "active key can be rotated.",
                param="key_id",
            )
        now = self._clock.now()
        new, plaintext = await self._issue(replace(old, created_at=now, last_used_at=None))
        if grace <= timedelta(0):
            after = await self._keys.revoke(old.id, now)
        else:
            ends = now + grace
            expiry = ends if old.expires_at is None else min(old.expires_at, ends)
            after = await self._keys.update(replace(old, expires_at=expiry))
        if after is None:  # removed meanwhile: nothing does that, but say so if it happens
            raise NotFound(f"No API key with id or prefix '{id_or_prefix}'.", param="key_id")
        return Rotation(old, after, new, plaintext)

    async def usage(
        self, id_or_prefix: str | None = None, period: str | None = None
    ) -> Sequence[UsageRecord]:
        if period is not None and not _PERIOD.match(period):
            raise InvalidRequest(f"Invalid period {period!r}: expected YYYY-MM.", param="period")
        key_id = None if id_or_prefix is None else (await self.find(id_or_prefix)).id
        records = await self._usage.list(key_id=key_id, period=period)
        # Teams' counts share the ledger (``domain.teams``); ``TeamAdmin.usage`` shows them.
        return [r for r in records if not r.key_id.startswith(TEAM_LEDGER_PREFIX)]

    async def budgets(self, id_or_prefix: str | None = None) -> Sequence[BudgetStatus]:
        """Each budgeted key's spend in its current window (one key's, if named)."""
        keys = await self.list() if id_or_prefix is None else [await self.find(id_or_prefix)]
        return await budget_statuses(self._budget, keys, self._clock.now())

    async def model_quotas(self, id_or_prefix: str | None = None) -> Sequence[ModelQuotaStatus]:
        """Each quota a key has on a model, counted this month (one key's, if named)."""
        keys = await self.list() if id_or_prefix is None else [await self.find(id_or_prefix)]
        return await model_quota_statuses(self._model_quota, keys, self._clock.now())

    async def create_first_admin(self, name: str = "admin") -> tuple[ApiKey, str] | None:
        """Create an admin key if the store has no keys at all (first start)."""
        if await self._keys.list():
            return None
        return await self.create(name=name, role=Role.ADMIN)
