"""Editing a key's limits and rotating a key (the use cases behind PATCH and rotate)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from llmserver.adapters.memory import MemoryKeyStore
from llmserver.domain.audit import changed_only, key_settings
from llmserver.domain.errors import InvalidRequest
from llmserver.domain.key_admin import (
    KeyAdmin,
    KeyEdit,
    KeyState,
    key_matches,
    key_state,
)
from llmserver.domain.key_lifetimes import parse_grace
from llmserver.domain.keys import Role, parse_prefix
from unit.key_admin_support import FakeClock


async def test_an_edit_changes_only_what_it_names(admin: KeyAdmin, clock: FakeClock) -> None:
    key, _ = await admin.create(name="svc", rpm_limit=60, quota_tokens=1000)
    expiry = clock.now() + timedelta(days=3)
    before, after = await admin.update(
        key.prefix, KeyEdit(rpm_limit=2, allowed_models=["demo"], expires_at=expiry)
    )
    assert before == key
    assert (after.rpm_limit, after.quota_tokens, after.name) == (2, 1000, "svc")
    assert after.allowed_models == ("demo-tiny-llama",)  # stored as the id
    assert after.expires_at == expiry
    _, unlimited = await admin.update(key.id, KeyEdit(quota_tokens=None, expires_at=None))
    assert (unlimited.quota_tokens, unlimited.expires_at, unlimited.rpm_limit) == (None, None, 2)
    old, new = changed_only(key_settings(before), key_settings(after))
    assert old == {"rpm_limit": 60, "allowed_models": [], "expires_at": None}
    assert new == {
        "rpm_limit": 2,
        "allowed_models": ["demo-tiny-llama"],
        "expires_at": expiry.isoformat(),
    }


@pytest.mark.parametrize(
    ("edit", "param"),
    [
        (KeyEdit(rpm_limit=0), "rpm_limit"),
        (KeyEdit(quota_tokens=-1), "quota_tokens"),
        (KeyEdit(name="  "), "name"),
        (KeyEdit(allowed_models=["nope"]), "allowed_models"),
        (KeyEdit(expires_at=datetime(2026, 1, 1)), "expires_at"),  # noqa: DTZ001
        (KeyEdit(expires_at=datetime(9000, 1, 1, tzinfo=UTC)), "expires_at"),
        (KeyEdit(expires_at=datetime(2026, 3, 14, 11, tzinfo=UTC)), "expires_at"),
        (KeyEdit(expires_at=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))), "expires_at"),
    ],
)
async def test_a_bad_edit_names_its_field_and_changes_nothing(
    admin: KeyAdmin, keys: MemoryKeyStore, edit: KeyEdit, param: str
) -> None:
    key, _ = await admin.create(name="svc")
    with pytest.raises(InvalidRequest) as refused:
        await admin.update(key.id, edit)
    assert refused.value.param == param
    assert await keys.get(key.id) == key


async def test_rotation_copies_the_settings_and_ends_the_old_key_after_the_grace(
    admin: KeyAdmin, clock: FakeClock
) -> None:
    old, _ = await admin.create(
        name="svc", role=Role.USER, rpm_limit=7, quota_tokens=99, allowed_models=["tiny"]
    )
    clock.advance(60)
    rotation = await admin.rotate(old.id, timedelta(hours=1))
    new = rotation.new
    assert parse_prefix(rotation.plaintext) == new.prefix != old.prefix
    assert new.id != old.id
    assert (new.name, new.role, new.rpm_limit, new.quota_tokens, new.allowed_models) == (
        "svc",
        Role.USER,
        7,
        99,
        ("tiny",),
    )
    assert new.created_at == clock.now()
    assert rotation.old_after.expires_at == clock.now() + timedelta(hours=1)
    assert rotation.old_after.revoked_at is None
    clock.advance(3599)
    assert key_state(await admin.find(old.id), clock.now()) is KeyState.ACTIVE
    clock.advance(1)
    assert key_state(await admin.find(old.id), clock.now()) is KeyState.EXPIRED
    assert key_state(await admin.find(new.id), clock.now()) is KeyState.ACTIVE


async def test_rotation_keeps_an_earlier_expiry_and_zero_grace_revokes(
    admin: KeyAdmin, clock: FakeClock
) -> None:
    soon, _ = await admin.create(name="soon", expires_in="10m")
    rotation = await admin.rotate(soon.id, timedelta(hours=1))
    assert rotation.old_after.expires_at == soon.expires_at
    assert rotation.new.expires_at == soon.expires_at  # the same settings, expiry included

    now, _ = await admin.create(name="now")
    revoked = await admin.rotate(now.id, parse_grace("0"))
    assert revoked.old_after.revoked_at == clock.now()
    with pytest.raises(InvalidRequest, match="only an active key"):
        await admin.rotate(now.id)


@pytest.mark.parametrize(
    ("text", "grace"),
    [
        ("0", timedelta(0)),
        ("0s", timedelta(0)),
        ("24h", timedelta(hours=24)),
        ("30d", timedelta(days=30)),
    ],
)
def test_grace_periods(text: str, grace: timedelta) -> None:
    assert parse_grace(text) == grace


@pytest.mark.parametrize("text", ["31d", "-1h", "soon", ""])
def test_bad_grace_periods_are_refused(text: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_grace(text)
    assert refused.value.param == "grace_period"


async def test_key_search_by_text_state_and_role(admin: KeyAdmin, clock: FakeClock) -> None:
    # A second apart: keys list in creation order.
    billing, _ = await admin.create(name="Billing service")
    clock.advance(1)
    ops, _ = await admin.create(name="ops", role=Role.ADMIN)
    clock.advance(1)
    old, _ = await admin.create(name="old billing")
    await admin.revoke(old.id)
    every = await admin.list()
    now = clock.now()

    def names(**filters: object) -> list[str]:
        return [k.name for k in every if key_matches(k, now, **filters)]  # type: ignore[arg-type]

    assert names(text="BILLING") == ["Billing service", "old billing"]
    assert names(text=ops.prefix) == ["ops"]
    assert names(text=billing.id[:8]) == ["Billing service"]
    assert names(state=KeyState.REVOKED) == ["old billing"]
    assert names(text="billing", state=KeyState.ACTIVE) == ["Billing service"]
    assert names(role=Role.ADMIN) == ["ops"]
    assert names() == ["Billing service", "ops", "old billing"]
