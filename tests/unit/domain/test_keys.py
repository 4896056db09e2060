"""API keys: generation, parsing, keyed hashing, constant-time verification, roles."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmserver.domain import keys
from llmserver.domain.errors import AuthReason, Unauthenticated
from llmserver.domain.keys import (
    ApiKey,
    KeyHasher,
    Role,
    WeakServerSecret,
    generate_key,
    generate_server_secret,
    parse_prefix,
    role_spec,
)

SECRET = "unit-test-server-secret-0123456789abcdef"


def test_a_generated_key_parses_to_its_prefix() -> None:
    issued = generate_key()
    scheme, prefix, secret = issued.plaintext.split("_", 2)
    assert (scheme, prefix) == ("llms", issued.prefix)
    assert len(prefix) == keys.PREFIX_CHARS
    assert len(secret) >= 43  # 32 random bytes, base64url
    assert parse_prefix(issued.plaintext) == issued.prefix


def test_generated_keys_differ() -> None:
    issued = {generate_key().plaintext for _ in range(50)}
    assert len(issued) == 50


@given(st.text(max_size=80))
def test_anything_not_shaped_like_a_key_is_malformed(text: str) -> None:
    parts = text.split("_", 2)
    well_formed = (
        len(parts) == 3
        and parts[0] == "llms"
        and len(parts[1]) == 12
        and all(c in "abcdefghijklmnopqrstuvwxyz0123456789" for c in parts[1])
        and len(parts[2]) >= 16
        and all(c.isascii() and (c.isalnum() or c in "-_") for c in parts[2])
    )
    if well_formed:
        assert parse_prefix(text) == parts[1]
    else:
        with pytest.raises(Unauthenticated) as caught:
            parse_prefix(text)
        assert caught.value.reason is AuthReason.MALFORMED


@pytest.mark.parametrize(
    "text",
    [
        "",
        "llms",
        "llms__0123456789abcdefghij",
        "llms_abcdefghijkl_",
        "llms_abcdefghijkl_0123456789abcde",  # a secret one character too short
        "llms_abcdéfghijkl_0123456789abcdefghij",
        "llms_abcdefghijkl_0123456789abcdefghi=",
        "llms_abcdefghijkl_0123456789abcdefghi\n",
        " llms_abcdefghijkl_0123456789abcdefghij",
        "LLMS_abcdefghijkl_0123456789abcdefghij",
    ],
)
def test_malformed_keys_are_refused(text: str) -> None:
    with pytest.raises(Unauthenticated):
        parse_prefix(text)


def test_a_secret_may_contain_underscores() -> None:
    assert parse_prefix("llms_abcdefghijkl_0123_5678_abcdef_hij") == "abcdefghijkl"


def test_hashing_is_keyed_by_the_server_secret() -> None:
    issued = generate_key()
    one, other = KeyHasher(SECRET), KeyHasher(generate_server_secret())
    assert one.hash(issued.plaintext) == one.hash(issued.plaintext)
    assert one.hash(issued.plaintext) != other.hash(issued.plaintext)
    assert issued.plaintext not in one.hash(issued.plaintext)
    assert len(one.hash(issued.plaintext)) == 64


@given(st.text(max_size=300))
def test_a_hash_is_hmac_sha256_under_the_server_secret(text: str) -> None:
    """Stored hashes stay valid: whatever the hasher does inside, each hash is the
    standard HMAC-SHA256 of the key, keyed by the server secret."""
    message = text.encode("utf-8", "surrogatepass")
    expected = hmac.new(SECRET.encode(), message, "sha256").hexdigest()
    hasher = KeyHasher(SECRET)
    assert hasher.hash(text) == expected
    assert hasher.hash(text) == expected  # the keyed state is copied, never used up


@given(st.text(max_size=80))
def test_only_the_exact_key_verifies(presented: str) -> None:
    hasher = KeyHasher(SECRET)
    issued = generate_key()
    stored = hasher.hash(issued.plaintext)
    assert hasher.verify(issued.plaintext, stored)
    assert hasher.verify(presented, stored) is (presented == issued.plaintext)


def test_verification_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[str, str]] = []
    compare_digest = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return compare_digest(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    hasher = KeyHasher(SECRET)
    stored = hasher.hash("llms_abcdefghijkl_0123456789abcdefghij")
    assert not hasher.verify("llms_abcdefghijkl_0123456789abcdefghiX", stored)
    assert compared == [(hasher.hash("llms_abcdefghijkl_0123456789abcdefghiX"), stored)]


@pytest.mark.parametrize(
    "weak",
    ["", "short", "x" * 31, "a" * 64, "changeme" * 8, "0123456789" * 3 + "0"],
)
def test_a_weak_server_secret_is_refused(weak: str) -> None:
    with pytest.raises(WeakServerSecret):
        KeyHasher(weak)


def test_a_generated_server_secret_is_strong() -> None:
    secret = generate_server_secret()
    assert len(secret) >= 64
    KeyHasher(secret)


def test_roles_have_defaults_and_admin_is_unlimited() -> None:
    assert {role.value for role in Role} >= {"admin", "user", "playground"}
    admin, user, playground = (role_spec(r) for r in (Role.ADMIN, Role.USER, Role.PLAYGROUND))
    assert (admin.default_rpm, admin.default_quota_tokens) == (None, None)
    # The playground is limited, and tighter than a user key.
    assert 0 < (playground.default_rpm or 10**9) < (user.default_rpm or 0)
    assert 0 < (playground.default_quota_tokens or 10**9) < (user.default_quota_tokens or 0)


def key(**fields: object) -> ApiKey:
    base: dict[str, object] = {
        "id": "k1",
        "name": "n",
        "prefix": "abcdefghijkl",
        "key_hash": "0" * 64,
        "role": Role.USER,
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    return ApiKey(**{**base, **fields})  # type: ignore[arg-type]


def test_an_empty_allow_list_allows_every_model() -> None:
    assert key().may_use("anything")
    assert key(allowed_models=("a",)).may_use("a")
    assert not key(allowed_models=("a",)).may_use("b")


@pytest.mark.parametrize(
    "fields",
    [
        {"rpm_limit": 0},
        {"rpm_limit": -1},
        {"quota_tokens": -1},
        {"tpm_limit": 0},
        {"max_parallel": 0},
    ],
)
def test_impossible_limits_are_rejected(fields: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must"):
        key(**fields)


def test_revoking_keeps_everything_else() -> None:
    at = datetime(2026, 2, 1, tzinfo=UTC)
    original = key(rpm_limit=5)
    revoked = original.revoked(at)
    assert revoked.revoked_at == at
    assert revoked.rpm_limit == 5
    assert original.revoked_at is None
