from __future__ import annotations

from datetime import timedelta

import pytest

from llmserver.adapters.memory import MemoryKeyStore, MemoryUsageStore
from llmserver.domain.errors import InvalidRequest, NotFound
from llmserver.domain.key_admin import KeyAdmin, KeyState, key_state
from llmserver.domain.key_lifetimes import parse_duration
from llmserver.domain.keys import KeyHasher, Role, parse_prefix
from unit.key_admin_support import MODELS, SECRET, FakeClock


async def test_create_stores_only_the_hash_and_returns_the_plaintext_once(
    admin: KeyAdmin, keys: MemoryKeyStore, clock: FakeClock
) -> None:
    key, plaintext = await admin.create(
        name="ci", allowed_models=["tiny", " demo-tiny-llama ", "tiny"]
    )

    assert parse_prefix(plaintext) == key.prefix
    assert KeyHasher(SECRET).verify(plaintext, key.key_hash)
    assert plaintext not in repr(key)
    assert await keys.get(key.id) == key
    assert key.created_at == clock.now()
    assert key.allowed_models == ("tiny", "demo-tiny-llama")
    assert key.expires_at is None


async def test_allowed_models_are_stored_as_ids(admin: KeyAdmin) -> None:
    """Requests are checked against the model id: a key storing the alias ``demo`` was
    refused ``demo``."""
    key, _ = await admin.create(name="k", allowed_models=["demo", "demo-tiny-llama"])

    assert key.allowed_models == ("demo-tiny-llama",)
    assert key.may_use(MODELS.resolve("demo").id)


async def test_unknown_models_are_refused_unless_allowed(admin: KeyAdmin) -> None:
    with pytest.raises(
        InvalidRequest, match=r"'no-such-model'.*serves: demo-tiny-llama, tiny"
    ) as info:
        await admin.create(name="k", allowed_models=["tiny", "no-such-model"])
    later, _ = await admin.create(
        name="k", allowed_models=["demo", "configured-later"], allow_unknown_models=True
    )

    assert (info.value.param, info.value.code) == ("allowed_models", "model_not_found")
    assert await admin.list() == [later]
    assert later.allowed_models == ("demo-tiny-llama", "configured-later")


@pytest.mark.parametrize(
    ("role", "quota", "rpm"),
    [(Role.ADMIN, None, None), (Role.USER, 1_000_000, 60), (Role.PLAYGROUND, 100_000, 10)],
)
async def test_limits_default_to_the_role(
    admin: KeyAdmin, role: Role, quota: int | None, rpm: int | None
) -> None:
    key, _ = await admin.create(name="k", role=role.value)

    assert (key.role, key.quota_tokens, key.rpm_limit) == (role, quota, rpm)


async def test_given_limits_and_expiry_win(admin: KeyAdmin, clock: FakeClock) -> None:
    key, _ = await admin.create(name="k", quota_tokens=0, rpm_limit=5, expires_in="12h")

    assert (key.quota_tokens, key.rpm_limit) == (0, 5)
    assert key.expires_at == clock.now() + timedelta(hours=12)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        (" 90m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
        ("2w", timedelta(weeks=2)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "d", "0d", "000d", "-1d", "1y", "1.5h", "\u0663d"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(InvalidRequest, match="Invalid duration") as info:
        parse_duration(text)
    assert info.value.param == "expires_in"


@pytest.mark.parametrize("text", ["36501d", "3000000d", "99999999999999w", "9" * 5000 + "s"])
async def test_lifetimes_past_the_maximum_are_refused(admin: KeyAdmin, text: str) -> None:
    """Each of these raised OverflowError or ValueError (a 500, a CLI traceback)."""
    with pytest.raises(InvalidRequest, match="too long: at most 36500d") as info:
        await admin.create(name="k", expires_in=text)
    assert info.value.param == "expires_in"


async def test_the_longest_lifetime_is_accepted(admin: KeyAdmin, clock: FakeClock) -> None:
    key, _ = await admin.create(name="k", expires_in="36500d")

    assert key.expires_at == clock.now() + timedelta(days=36_500)


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"name": " "}, "name"),
        ({"role": "root"}, "role"),
        ({"quota_tokens": -1}, "quota_tokens"),
        ({"rpm_limit": -1}, "rpm_limit"),
        ({"name": "n" * 201}, "name"),
        ({"name": "a\x00b"}, "name"),
        ({"allowed_models": ["m\x00"], "allow_unknown_models": True}, "allowed_models"),
        ({"quota_tokens": 10**15 + 1}, "quota_tokens"),
        ({"rpm_limit": 10**9 + 1}, "rpm_limit"),
    ],
)
async def test_invalid_requests_name_their_parameter(
    admin: KeyAdmin, changes: dict[str, object], param: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        await admin.create(**({"name": "k"} | changes))  # type: ignore[arg-type]
    assert info.value.param == param


async def test_find_and_revoke_by_id_or_prefix(admin: KeyAdmin, clock: FakeClock) -> None:
    key, _ = await admin.create(name="k")

    assert await admin.find(key.id) == key
    assert await admin.find(key.prefix) == key
    clock.advance(60)
    revoked = await admin.revoke(key.prefix)

    assert revoked.revoked_at == clock.now()
    assert key_state(revoked, clock.now()) is KeyState.REVOKED
    with pytest.raises(NotFound):
        await admin.find("missing")
    with pytest.raises(NotFound):
        await admin.revoke("missing")


async def test_key_states(admin: KeyAdmin, clock: FakeClock) -> None:
    key, _ = await admin.create(name="k", expires_in="1h")

    assert key_state(key, clock.now()) is KeyState.ACTIVE
    clock.advance(3600)
    assert key_state(key, clock.now()) is KeyState.EXPIRED


async def test_usage_per_key_and_period(admin: KeyAdmin, usage: MemoryUsageStore) -> None:
    a, _ = await admin.create(name="a")
    b, _ = await admin.create(name="b")
    await usage.settle(a.id, "2026-03", 0, 10)
    await usage.settle(b.id, "2026-03", 0, 20)
    await usage.settle(a.id, "2026-04", 0, 30)

    assert [r.used_tokens for r in await admin.usage(a.prefix)] == [10, 30]
    assert sorted(r.used_tokens for r in await admin.usage(period="2026-03")) == [10, 20]
    assert len(await admin.usage()) == 3
    with pytest.raises(InvalidRequest, match="YYYY-MM"):
        await admin.usage(period="2026-13")


async def test_a_prefix_collision_draws_a_new_key(
    admin: KeyAdmin, keys: MemoryKeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = await admin.create(name="first")
    real_add = keys.add
    calls = 0

    async def add_colliding_once(key: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("exists")
        await real_add(key)  # type: ignore[arg-type]

    monkeypatch.setattr(keys, "add", add_colliding_once)
    second, _ = await admin.create(name="second")

    assert calls == 2
    assert sorted(k.name for k in await admin.list()) == ["first", "second"]
    assert second.id != first.id


async def test_first_admin_is_created_only_on_an_empty_store(admin: KeyAdmin) -> None:
    created = await admin.create_first_admin()

    assert created is not None
    assert created[0].role is Role.ADMIN
    assert await admin.create_first_admin() is None
