from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from llmserver.domain.key_admin import MAX_NAME_LENGTH
from llmserver.domain.keys import ApiKey, KeyHasher, Role, generate_key, generate_server_secret
from llmserver.domain.ports import KeyStore
from llmserver.domain.registry import MODEL_ID_MAX_CHARS

T0 = datetime(2026, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)


def make_key(n: int = 1, **changes: object) -> ApiKey:
    fields: dict[str, object] = {
        "id": f"key-{n}",
        "name": f"key number {n}",
        "prefix": f"prefix{n:06d}",
        "key_hash": f"{n:064x}",
        "role": Role.USER,
        "created_at": T0 + timedelta(seconds=n),
    }
    return ApiKey(**(fields | changes))  # type: ignore[arg-type]


async def test_a_key_round_trips_with_every_field(key_store: KeyStore) -> None:
    key = make_key(
        quota_tokens=5_000_000_000,
        rpm_limit=60,
        allowed_models=("tiny", "demo"),
        expires_at=T0 + timedelta(days=30),
        last_used_at=T0 + timedelta(hours=1),
    )
    await key_store.add(key)

    assert await key_store.get(key.id) == key
    found = await key_store.find_by_prefix(key.prefix)
    assert found == key
    # Equality does not tell a StrEnum from its string, nor a tuple from a list.
    assert (type(found.role), type(found.allowed_models)) == (Role, tuple)


async def test_datetimes_come_back_timezone_aware_as_the_same_instant(
    key_store: KeyStore,
) -> None:
    await key_store.add(make_key(created_at=T0.astimezone(timezone(timedelta(hours=2)))))

    stored = await key_store.get("key-1")

    assert stored is not None
    assert stored.created_at == T0
    assert stored.created_at.tzinfo is not None


async def test_unknown_keys_are_none(key_store: KeyStore) -> None:
    assert await key_store.get("nope") is None
    assert await key_store.find_by_prefix("nope") is None


@pytest.mark.parametrize("clash", ["id", "prefix"])
async def test_a_duplicate_id_or_prefix_is_refused(key_store: KeyStore, clash: str) -> None:
    first = make_key(1)
    await key_store.add(first)
    second = make_key(2, **{clash: getattr(first, clash)})

    with pytest.raises(ValueError, match="exists"):
        await key_store.add(second)

    assert await key_store.get(second.id) in (None, first)


async def test_list_is_ordered_by_creation(key_store: KeyStore) -> None:
    for n in (3, 1, 2):
        await key_store.add(make_key(n))

    assert [k.id for k in await key_store.list()] == ["key-1", "key-2", "key-3"]


async def test_revoking_keeps_the_first_revocation_time(key_store: KeyStore) -> None:
    await key_store.add(make_key())
    first = T0 + timedelta(days=1)

    revoked = await key_store.revoke("key-1", first)
    again = await key_store.revoke("key-1", first + timedelta(days=1))

    assert revoked is not None
    assert revoked.revoked_at == first
    assert again is not None
    assert again.revoked_at == first
    assert await key_store.get("key-1") == revoked
    assert await key_store.revoke("nope", first) is None


async def test_touch_records_last_use(key_store: KeyStore) -> None:
    await key_store.add(make_key())
    used = T0 + timedelta(minutes=5)

    await key_store.touch("key-1", used)
    await key_store.touch("nope", used)

    stored = await key_store.get("key-1")
    assert stored is not None
    assert stored.last_used_at == used


async def test_every_string_field_at_its_longest_legal_value_round_trips(
    key_store: KeyStore,
) -> None:
    key = make_key(
        id=uuid.uuid4().hex,  # what KeyAdmin issues
        name="名" * MAX_NAME_LENGTH,  # characters, not bytes
        prefix=generate_key().prefix,
        key_hash=KeyHasher(generate_server_secret()).hash("any key"),
        role=max(Role, key=len),
        allowed_models=tuple(f"{n}" * MODEL_ID_MAX_CHARS for n in range(10)),
    )
    await key_store.add(key)

    assert await key_store.get(key.id) == key


async def test_update_changes_the_settings_and_keeps_the_rest(key_store: KeyStore) -> None:
    key = make_key(quota_tokens=1000, rpm_limit=60, allowed_models=("tiny",))
    await key_store.add(key)
    await key_store.find_by_prefix(key.prefix)  # a cache in front now holds the old copy
    revoked_at = T0 + timedelta(days=2)
    edited = make_key(
        name="é" * MAX_NAME_LENGTH,
        quota_tokens=None,
        rpm_limit=2,
        allowed_models=("m" * MODEL_ID_MAX_CHARS,),
        expires_at=T0 + timedelta(days=9),
        # Not settings: the update leaves these as stored.
        key_hash="f" * 64,
        prefix="otherprefix0",
        role=Role.ADMIN,
        revoked_at=revoked_at,
        last_used_at=revoked_at,
    )
    stored = await key_store.update(edited)
    expected = ApiKey(
        id=key.id,
        name="é" * MAX_NAME_LENGTH,
        prefix=key.prefix,
        key_hash=key.key_hash,
        role=Role.USER,
        created_at=key.created_at,
        quota_tokens=None,
        rpm_limit=2,
        allowed_models=("m" * MODEL_ID_MAX_CHARS,),
        expires_at=T0 + timedelta(days=9),
    )
    assert stored == expected
    assert await key_store.get(key.id) == expected
    assert await key_store.find_by_prefix(key.prefix) == expected
    assert await key_store.update(make_key(2)) is None
    assert await key_store.get("key-2") is None
