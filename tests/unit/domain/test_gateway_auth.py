"""Authentication and authorisation refusals of the gateway."""

from __future__ import annotations

from datetime import timedelta

import pytest

from llmserver.domain.errors import (
    AuthReason,
    ErrorKind,
    ModelNotAllowed,
    ModelNotFound,
    Unauthenticated,
)
from llmserver.domain.gateway import TOUCH_INTERVAL

from .world import EMBED_MODEL, MODEL, OTHER_MODEL, World, ask, origin


async def refusal(world: World, presented: str | None) -> AuthReason:
    with pytest.raises(Unauthenticated) as caught:
        await world.gateway.authenticate(presented)
    assert caught.value.kind is ErrorKind.UNAUTHENTICATED
    assert caught.value.code == caught.value.reason.value
    return caught.value.reason


@pytest.mark.parametrize("presented", [None, ""])
async def test_a_missing_key_is_refused(presented: str | None) -> None:
    assert await refusal(World(), presented) is AuthReason.MISSING


@pytest.mark.parametrize(
    "presented",
    [
        "sk-1234567890",
        "Bearer llms_abcdefghijkl_0123456789abcdefghij",
        "llms_ABCDEFGHIJKL_0123456789abcdefghij",
        "llms_abcdefghijk_0123456789abcdefghij",
        "llms_abcdefghijkl_short",
        "llms_abcdefghijkl_0123456789abcdef ghij",
        "xxxx_abcdefghijkl_0123456789abcdefghij",
    ],
)
async def test_a_malformed_key_is_refused(presented: str) -> None:
    assert await refusal(World(), presented) is AuthReason.MALFORMED


async def test_an_unknown_key_is_refused() -> None:
    world = World()
    await world.issue()
    assert await refusal(world, "llms_abcdefghijkl_0123456789abcdefghij") is AuthReason.INVALID


async def test_a_wrong_secret_for_a_known_prefix_is_refused() -> None:
    world = World()
    plaintext, _ = await world.issue()
    tampered = plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")
    assert await refusal(world, tampered) is AuthReason.INVALID


async def test_a_revoked_key_is_refused() -> None:
    world = World()
    plaintext, key = await world.issue()
    await world.keys.revoke(key.id, world.clock.now())
    assert await refusal(world, plaintext) is AuthReason.REVOKED


async def test_a_key_is_refused_from_its_expiry_on() -> None:
    world = World()
    plaintext, _ = await world.issue(expires_at=world.clock.now() + timedelta(seconds=10))
    assert (await world.gateway.authenticate(plaintext)).key.expires_at is not None
    world.clock.advance(10)
    assert await refusal(world, plaintext) is AuthReason.EXPIRED


async def test_authentication_records_last_use_at_most_once_a_minute() -> None:
    world = World()
    plaintext, key = await world.issue()
    first = world.clock.now()
    await world.gateway.authenticate(plaintext)
    world.clock.advance(TOUCH_INTERVAL.total_seconds() - 1)
    await world.gateway.authenticate(plaintext)
    assert (await world.keys.get(key.id)).last_used_at == first  # type: ignore[union-attr]
    world.clock.advance(1)
    await world.gateway.authenticate(plaintext)
    assert (await world.keys.get(key.id)).last_used_at == world.clock.now()  # type: ignore[union-attr]


async def test_a_model_outside_the_allowed_list_is_refused_before_anything_runs() -> None:
    world = World()
    principal = await world.principal(allowed_models=(OTHER_MODEL,))
    with pytest.raises(ModelNotAllowed) as caught:
        await world.gateway.complete(principal, ask(), origin("r1"))
    assert caught.value.kind is ErrorKind.FORBIDDEN
    assert world.backend.generate_calls == 0
    assert (await world.usage_of(principal)).reserved_tokens == 0
    [row] = world.logs
    assert (row.status, row.error_code, row.model) == (403, "model_not_allowed", MODEL)


async def test_an_unknown_model_is_not_found() -> None:
    world = World()
    principal = await world.principal()
    with pytest.raises(ModelNotFound) as caught:
        await world.gateway.complete(principal, ask(model="gpt-17"), origin("r1"))
    assert (caught.value.kind, caught.value.param) == (ErrorKind.NOT_FOUND, "model")
    [row] = world.logs
    assert (row.status, row.error_code, row.model) == (404, "model_not_found", "gpt-17")


async def test_an_alias_resolves_to_its_model() -> None:
    world = World()
    principal = await world.principal(allowed_models=(MODEL,))
    outcome = await world.gateway.complete(principal, ask(model="fake"), origin("r1"))
    assert outcome.model.id == MODEL
    assert world.logs[0].model == MODEL


async def test_visible_models_follow_the_allowed_list() -> None:
    world = World()
    restricted = await world.principal(allowed_models=(MODEL,))
    unrestricted = await world.principal()
    assert [s.id for s in world.gateway.visible_models(restricted)] == [MODEL]
    assert {s.id for s in world.gateway.visible_models(unrestricted)} == {
        MODEL,
        OTHER_MODEL,
        EMBED_MODEL,
    }
