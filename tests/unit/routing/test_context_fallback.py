"""A prompt too long for its model goes to the longer model it names (``context_fallback``)
instead of a 400: that model answers, and its log row and quota charge are that model's."""

from __future__ import annotations

import pytest

from llmserver.domain.errors import ContextLengthExceeded
from llmserver.domain.pricing import Prices
from unit.domain.world import LONG_MODEL, MODEL, World, ask, origin

TOO_LONG = "word " * 57  # 57 + 8 max_tokens > MODEL's 64; fits LONG_MODEL's 1024


async def test_a_prompt_too_long_goes_to_the_context_fallback() -> None:
    world = World(context_fallback=True)
    principal = await world.principal()
    result = await world.gateway.complete(principal, ask(TOO_LONG), origin("r1"))
    assert result.model.id == LONG_MODEL
    assert (world.backend.generate_calls, world.long_backend.generate_calls) == (0, 1)
    [row] = world.logs
    assert (row.model, row.status, row.prompt_tokens) == (LONG_MODEL, 200, 57)
    usage = await world.usage_of(principal)
    assert usage.reserved_tokens == 0
    assert usage.used_tokens == result.completion.total_tokens
    # A prompt that fits stays on its own model.
    short = await world.gateway.complete(principal, ask("hi"), origin("r2"))
    assert short.model.id == MODEL


async def test_without_a_context_fallback_it_is_still_refused() -> None:
    world = World()
    principal = await world.principal()
    with pytest.raises(ContextLengthExceeded):
        await world.gateway.complete(principal, ask(TOO_LONG), origin("r1"))
    assert world.long_backend.generate_calls == 0


async def test_a_key_that_may_not_use_the_fallback_is_refused_as_before() -> None:
    world = World(context_fallback=True)
    principal = await world.principal(allowed_models=(MODEL,))
    with pytest.raises(ContextLengthExceeded):
        await world.gateway.complete(principal, ask(TOO_LONG), origin("r1"))
    assert world.long_backend.generate_calls == 0


async def test_the_key_limits_and_budget_are_held_once_for_the_model_that_answers() -> None:
    # MODEL is priced, LONG_MODEL free: held at MODEL's prices, the long prompt's worst
    # case would not fit a budget of one nanodollar.
    world = World(context_fallback=True, prices=Prices(input=150_000, output=600_000))
    principal = await world.principal(budget_nanodollars=1, tpm_limit=1_000, max_parallel=1)
    result = await world.gateway.complete(principal, ask(TOO_LONG), origin("r1"))
    assert result.model.id == LONG_MODEL
    assert await world.budget.list() == []
    # One TPM entry, settled to what was used, and the one parallel slot given back: a
    # hold taken for the first fitting too would still be there.
    now_ms = int(world.clock.now().timestamp() * 1000)
    assert world.token_rate.held(f"tpm:{principal.key.id}", now_ms) == (
        result.completion.total_tokens
    )
    assert world.parallel.held(f"par:{principal.key.id}") == 0
    again = await world.gateway.complete(principal, ask(TOO_LONG), origin("r2"))
    assert again.model.id == LONG_MODEL
