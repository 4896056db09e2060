"""Properties of the holds over any interleaving of admissions, progress, settles, cuts
and time: no counter ever exceeds its limit, a refused request holds nothing, the TPM
window holds exactly what the model of it says (reservations, shrunk to the tokens used
when settled), and no reservation survives its request.

Streams give the interleaving: ``open_stream`` admits, each step pulls one event (the
last pull settles), ``aclose`` cuts a request short (the client leaving)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from llmserver.domain.errors import GatewayError
from llmserver.domain.gateway import Principal, StreamSession
from llmserver.domain.ratelimit import WINDOW_MS

from .world import World, ask, origin

PROMPT = 5
REPLY = 5
LIMITS = ({"tpm_limit": 40, "max_parallel": 2, "quota_tokens": 150}, {"tpm_limit": 25})


@dataclass
class Live:
    key: int
    session: StreamSession
    entry: list[int]
    """``[admitted_at_ms, tokens]`` in the model of the key's window."""
    tokens: int
    """What the model will write."""
    reserved: int
    pulled: int = 0
    yielded: int = 1
    """Events the stream produced: ``open_stream`` fetched the first."""


ops = st.lists(
    st.one_of(
        st.tuples(st.just("open"), st.integers(0, 1), st.integers(1, 40)),
        st.tuples(st.just("step"), st.integers(0, 9)),
        st.tuples(st.just("close"), st.integers(0, 9)),
        st.tuples(st.just("tick"), st.sampled_from([0.001, 1, 10, 30, 59.999])),
    ),
    max_size=40,
)


class Model:
    def __init__(self, world: World, keys: list[Principal]) -> None:
        self.world = world
        self.keys = keys
        self.live: list[Live] = []
        self.entries: list[list[list[int]]] = [[] for _ in keys]

    def now_ms(self) -> int:
        return int(self.world.clock.now().timestamp() * 1000)

    async def observed(self) -> list[tuple[int, int, int]]:
        """Per key: tokens in its TPM window, slots held, quota reserved."""
        now, world = self.now_ms(), self.world
        return [
            (
                world.token_rate.held(f"tpm:{p.key.id}", now),
                world.parallel.held(f"par:{p.key.id}"),
                (await world.usage_of(p)).reserved_tokens,
            )
            for p in self.keys
        ]

    async def check(self) -> None:
        now = self.now_ms()
        for index, (held, slots, reserved) in enumerate(await self.observed()):
            limits: dict[str, Any] = LIMITS[index]
            live = [r for r in self.live if r.key == index]
            assert held == sum(t for at, t in self.entries[index] if at > now - WINDOW_MS)
            assert held <= limits["tpm_limit"]
            assert slots == (len(live) if "max_parallel" in limits else 0)
            assert slots <= limits.get("max_parallel", slots)
            assert reserved == sum(r.reserved for r in live)

    async def open(self, key: int, max_tokens: int) -> None:
        before = await self.observed()
        request = ask(use_cache=False, max_tokens=max_tokens)
        try:
            session = await self.world.gateway.open_stream(self.keys[key], request, origin("r"))
        except GatewayError:
            assert await self.observed() == before  # a refusal holds nothing
            return
        entry = [self.now_ms(), PROMPT + max_tokens]
        self.entries[key].append(entry)
        self.live.append(Live(key, session, entry, min(REPLY, max_tokens), PROMPT + max_tokens))

    async def step(self, index: int) -> None:
        if not self.live:
            return
        request = self.live[index % len(self.live)]
        request.pulled += 1
        if request.pulled > 1 and request.yielded <= request.tokens:
            request.yielded += 1
        try:
            await anext(request.session.events)
        except StopAsyncIteration:
            self.live.remove(request)
            request.entry[1] = PROMPT + request.tokens

    async def close(self, index: int) -> None:
        if not self.live:
            return
        request = self.live.pop(index % len(self.live))
        await request.session.events.aclose()  # type: ignore[attr-defined]
        request.entry[1] = PROMPT + min(request.yielded, request.tokens)


async def scenario(steps: list[tuple[Any, ...]]) -> None:
    world = World()
    model = Model(world, [await world.principal(**limits) for limits in LIMITS])
    for op, *args in steps:
        if op == "tick":
            world.clock.advance(args[0])
        else:
            await getattr(model, op)(*args)
        await model.check()
    while model.live:
        await model.close(0)
        await model.check()
    for held, slots, reserved in await model.observed():
        assert (slots, reserved) == (0, 0)
        assert held <= 40


@settings(max_examples=300, deadline=None)
@given(steps=ops)
def test_no_counter_exceeds_its_limit_and_no_hold_survives_its_request(
    steps: list[tuple[Any, ...]],
) -> None:
    asyncio.run(scenario(steps))
