"""A gateway wired to memory adapters and fakes, with helpers to issue keys and ask."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any

from llmserver.adapters.memory import (
    MemoryCompletionCache,
    MemoryHotCache,
    MemoryKeyStore,
    MemoryParallelStore,
    MemoryRateLimitStore,
    MemoryTeamStore,
    MemoryTokenRateStore,
    MemoryUsageStore,
)
from llmserver.app.statuses import http_status
from llmserver.domain.gateway import (
    Accounts,
    CompletionRequest,
    Gateway,
    GatewayPolicy,
    Ledgers,
    Principal,
)
from llmserver.domain.gateway.holds import Limits
from llmserver.domain.gateway.traced import TracedGateway
from llmserver.domain.inference import ChatMessage, Prompt
from llmserver.domain.keys import ApiKey, KeyHasher, Role, generate_key
from llmserver.domain.logs import Origin, RequestLog
from llmserver.domain.pricing import FREE, Prices
from llmserver.domain.quota import UsageRecord, period_of
from llmserver.domain.registry import (
    BackendKind,
    ModelDefaults,
    ModelKind,
    ModelRegistry,
    ModelSpec,
)
from llmserver.domain.teams import Team

from .fakes import (
    FakeBackend,
    FakeBackends,
    FakeClock,
    FakeEmbedder,
    RecordingTelemetry,
    RecordingTracer,
)

SERVER_SECRET = "unit-test-server-secret-0123456789abcdef"
MODEL = "fake-model"
OTHER_MODEL = "other-model"
SPEC = ModelSpec(
    id=MODEL,
    aliases=("fake",),
    backend=BackendKind.TORCH,
    source="/nowhere",
    revision="r1",
    context_length=64,
    defaults=ModelDefaults(max_tokens=8, temperature=0.0),
)
OTHER_SPEC = ModelSpec(id=OTHER_MODEL, backend=BackendKind.HTTP, source="http://upstream")
LONG_MODEL = "long-model"
LONG_SPEC = ModelSpec(
    id=LONG_MODEL,
    backend=BackendKind.TORCH,
    source="/nowhere",
    context_length=1024,
    defaults=ModelDefaults(max_tokens=16),
)
"""``MODEL``'s context fallback when a world has one (``context_fallback``)."""
EMBED_MODEL = "fake-embed"
EMBED_SPEC = ModelSpec(
    id=EMBED_MODEL,
    backend=BackendKind.TORCH,
    source="/nowhere",
    context_length=16,
    kind=ModelKind.EMBEDDING,
)


NEEDS = 13
"""What ``ask()`` reserves on ``MODEL``: 5 prompt tokens + max_tokens 8 (the model's default)."""
USES = 10
"""What it is charged once answered: 5 prompt + 5 completion."""


def origin(request_id: str) -> Origin:
    """A request from the OpenAI chat route, numbered as that surface numbers statuses."""
    return Origin(request_id, "/v1/chat/completions", http_status)


def ask(text: str = "what is six times seven", **overrides: Any) -> CompletionRequest:
    prompt = Prompt(messages=(ChatMessage("user", text),))
    return CompletionRequest(**{"model": MODEL, "prompt": prompt, **overrides})


@dataclass
class World:
    hot: bool = True
    policy: GatewayPolicy = field(default_factory=GatewayPolicy)
    clock: FakeClock = field(default_factory=FakeClock)
    keys: MemoryKeyStore = field(default_factory=MemoryKeyStore)
    teams: MemoryTeamStore = field(default_factory=MemoryTeamStore)
    usage: MemoryUsageStore = field(default_factory=MemoryUsageStore)
    budget: MemoryUsageStore = field(default_factory=MemoryUsageStore)
    """The budget ledger (nanodollars per key and window)."""
    model_quota: MemoryUsageStore = field(default_factory=MemoryUsageStore)
    """The per-model quotas' ledger (tokens per key, model and month)."""
    limiter: MemoryRateLimitStore = field(default_factory=MemoryRateLimitStore)
    token_rate: MemoryTokenRateStore = field(default_factory=MemoryTokenRateStore)
    parallel: MemoryParallelStore = field(default_factory=MemoryParallelStore)
    cache: MemoryCompletionCache = field(default_factory=MemoryCompletionCache)
    telemetry: RecordingTelemetry = field(default_factory=RecordingTelemetry)
    logs: list[RequestLog] = field(default_factory=list)
    tracer: RecordingTracer | None = None
    """When set, the gateway is the traced one (``TracedGateway``), reporting to it."""
    prices: Prices = FREE
    """What the tokens of ``MODEL`` and ``EMBED_MODEL`` cost."""
    context_fallback: bool = False
    """Whether ``MODEL`` sends prompts too long for it to ``LONG_MODEL``."""

    def __post_init__(self) -> None:
        self.hasher = KeyHasher(SERVER_SECRET)
        self.backend = FakeBackend(MODEL, clock=self.clock)
        self.embedder = FakeEmbedder(EMBED_MODEL)
        self.long_backend = FakeBackend(LONG_MODEL, clock=self.clock)
        specs = [
            replace(SPEC, prices=self.prices),
            OTHER_SPEC,
            replace(EMBED_SPEC, prices=self.prices),
        ]
        if self.context_fallback:
            specs = [replace(specs[0], context_fallback=LONG_MODEL), *specs[1:], LONG_SPEC]
        self.hot_cache = MemoryHotCache(monotonic=self.clock.monotonic) if self.hot else None
        gateway: Callable[..., Gateway] = (
            Gateway if self.tracer is None else partial(TracedGateway, self.tracer)
        )
        self.gateway = gateway(
            accounts=Accounts(self.keys, self.teams),
            hasher=self.hasher,
            ledgers=Ledgers(self.usage, self.budget, self.model_quota),
            limits=Limits(requests=self.limiter, tokens=self.token_rate, parallel=self.parallel),
            cache=self.cache,
            hot_cache=self.hot_cache,
            registry=ModelRegistry(specs),
            backends=FakeBackends(self.backend, self.long_backend, embedders=[self.embedder]),
            clock=self.clock,
            log=self.logs.append,
            policy=self.policy,
            telemetry=self.telemetry,
        )
        self._ids = itertools.count(1)

    async def issue(self, **fields: Any) -> tuple[str, ApiKey]:
        issued = generate_key()
        key = ApiKey(
            id=f"key-{next(self._ids)}",
            name="test",
            prefix=issued.prefix,
            key_hash=self.hasher.hash(issued.plaintext),
            role=Role.USER,
            created_at=self.clock.now(),
        )
        key = replace(key, **fields)
        await self.keys.add(key)
        return issued.plaintext, key

    async def team(self, **limits: Any) -> Team:
        team = Team(id=f"{next(self._ids):032x}", name="the team", created_at=self.clock.now())
        team = replace(team, **limits)
        await self.teams.add(team)
        return team

    async def principal(self, **fields: Any) -> Principal:
        plaintext, _ = await self.issue(**fields)
        return await self.gateway.authenticate(plaintext)

    async def usage_of(self, principal: Principal, at: datetime | None = None) -> UsageRecord:
        return await self.usage.get(principal.key.id, period_of(at or self.clock.now()))


async def wait_until(condition: Callable[[], bool], *, rounds: int = 100) -> None:
    """Let other tasks run until ``condition()`` holds (bounded, no wall-clock timing)."""
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")
