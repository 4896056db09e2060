"""A key's per-model TPM window across replicas in Redis: two replicas' ``Limits`` on the
shared Redis admit at most the model's limit on that model and the key's limit in total
(a request the model's window refuses takes none of the key's), and a refused request
leaves no entry in either window."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime

import pytest

from llmserver.adapters.memory import MemoryParallelStore
from llmserver.adapters.redis import RedisTokenRateStore
from llmserver.adapters.redis.pipe import RedisPipe
from llmserver.adapters.redis.ratelimit import RedisRateLimitStore
from llmserver.domain.errors import TokenRateLimited
from llmserver.domain.gateway.holds import Holds, Limits
from llmserver.domain.key_limits import ModelLimit
from llmserver.domain.keys import ApiKey, Role

pytestmark = pytest.mark.redis

AT = datetime(2026, 12, 2, 12, tzinfo=UTC)
KEY = ApiKey(
    id=secrets.token_hex(16),
    name="per-model",
    prefix="abcdefghijkl",
    key_hash="h",
    role=Role.USER,
    created_at=AT,
    tpm_limit=1_000,
    model_limits=(ModelLimit("limited", tpm_limit=300),),
)


async def test_two_replicas_share_the_model_window_and_the_key_window(
    redis_pipe: RedisPipe,
) -> None:
    prefix = f"llmtest:{secrets.token_hex(6)}:"
    replicas = [
        Limits(
            requests=RedisRateLimitStore(redis_pipe, prefix=prefix + "rpm:"),
            tokens=RedisTokenRateStore(redis_pipe, prefix=prefix),
            parallel=MemoryParallelStore(),
        )
        for _ in range(2)
    ]

    async def take(limits: Limits, model: str) -> Holds | None:
        try:
            return await limits.take(KEY, 30, AT, KEY.model_limit(model))
        except TokenRateLimited:
            return None

    calls = [(r, m) for _ in range(25) for r in replicas for m in ("limited", "free")]
    taken = await asyncio.gather(*(take(r, m) for r, m in calls))

    on_limited = [h for h, (_, m) in zip(taken, calls, strict=True) if h and m == "limited"]
    on_free = [h for h, (_, m) in zip(taken, calls, strict=True) if h and m == "free"]
    # The model's window is taken first: one the key's window then refuses held it for a
    # moment, so the model may get fewer than its 10 (here the free model's requests may
    # fill the key's total first), never more; the key's total is full.
    assert len(on_limited) <= 300 // 30
    assert len(on_limited) + len(on_free) == 1_000 // 30
    assert all(h.model_tokens is not None for h in on_limited)
    assert all(h.model_tokens is None for h in on_free)

    # Every admitted request given back: both windows are empty again (no refused
    # request left an entry in the key's window either).
    for holds in on_limited + on_free:
        await replicas[0].release(holds)
    whole = await replicas[1].tokens.reserve(f"tpm:{KEY.id}", 1_000, 1_000, 0)
    model_whole = await replicas[1].tokens.reserve(f"tpm:{KEY.id}:limited", 300, 300, 0)
    assert whole.decision.admitted
    assert model_whole.decision.admitted

    # One after another, alternating replicas: exactly the model's 10 on it.
    in_turn = [await take(replicas[n % 2], "limited") for n in range(12)]
    assert sum(h is not None for h in in_turn) == 300 // 30
