"""What a request holds besides its quota reservation: a TPM window entry and a parallel
slot, taken all or nothing and closed exactly once with the reservation.

Taken in order of cost to refuse: the parallel slot (no tokens asked), then the TPM entry;
the quota reservation comes last (``Admissions.reserve``). When a later one refuses or
fails (a store down, the request cancelled), the earlier ones are given back before the
refusal is raised, so a refused request leaves no hold anywhere. Giving back runs in a
task of its own, shielded: the request's task may be cancelled again at every await.

A key without a TPM limit or ``max_parallel`` takes nothing here: ``Admissions.reserve``
tests the two attributes in line and does not call in."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime

from llmserver.domain.errors import ParallelLimited, TokenRateLimited, TooLargeForTokenRate
from llmserver.domain.keys import ApiKey
from llmserver.domain.ports import ParallelStore, RateLimitStore, TokenRateStore
from llmserver.domain.ratelimit import RateDecision
from llmserver.domain.token_rate import TokenHold


# Not frozen: built on every request's path of a key with such limits (see ``RequestLog``).
@dataclass(slots=True)
class Holds:
    tokens: TokenHold | None
    parallel: str | None
    """The parallel bucket a slot is held in."""
    token_rate: RateDecision | None
    """The TPM decision, for the ``x-ratelimit-*-tokens`` headers."""


class Limits:
    """A key's rate limits: the RPM window (``requests``, checked first, by ``Admissions``)
    and the holds above."""

    def __init__(
        self, *, requests: RateLimitStore, tokens: TokenRateStore, parallel: ParallelStore
    ) -> None:
        self.requests = requests
        self.tokens = tokens
        self.parallel = parallel
        self._closing: set[asyncio.Future[None]] = set()

    async def take(self, key: ApiKey, tokens: int, at: datetime) -> Holds:
        """Hold a parallel slot and ``tokens`` of the TPM window, both or neither; refuse
        with ``ParallelLimited``, ``TokenRateLimited`` or ``TooLargeForTokenRate``."""
        holds = Holds(None, None, None)
        limit = key.tpm_limit
        if limit is not None and tokens > limit:
            raise TooLargeForTokenRate(needed=tokens, limit=limit)
        most = key.max_parallel
        if most is not None:
            bucket = f"par:{key.id}"
            if not await self.parallel.acquire(bucket, most):
                raise ParallelLimited(limit=most)
            holds.parallel = bucket
        if limit is None:
            return holds
        try:
            now_ms = int(at.timestamp() * 1000)
            taken = await self.tokens.reserve(f"tpm:{key.id}", limit, tokens, now_ms)
            holds.token_rate = decision = taken.decision
            if not decision.admitted:
                raise TokenRateLimited(needed=tokens, decision=decision)
        except BaseException:
            await self.release(holds)
            raise
        holds.tokens = taken.hold
        return holds

    async def settle(self, holds: Holds, used: int) -> None:
        """The request ended having used ``used`` tokens: its TPM entry shrinks to them,
        its slot is given back."""
        tokens, holds.tokens = holds.tokens, None
        await self._closed(None if tokens is None else self.tokens.settle(tokens, used), holds)

    async def release(self, holds: Holds) -> None:
        """The request failed before using anything: every hold is given back."""
        tokens, holds.tokens = holds.tokens, None
        await self._closed(None if tokens is None else self.tokens.release(tokens), holds)

    async def _closed(self, closing_tokens: Awaitable[None] | None, holds: Holds) -> None:
        parallel, holds.parallel = holds.parallel, None
        closing = asyncio.ensure_future(self._close(closing_tokens, parallel))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
        await asyncio.shield(closing)

    async def _close(self, closing_tokens: Awaitable[None] | None, parallel: str | None) -> None:
        try:
            if closing_tokens is not None:
                await closing_tokens
        finally:
            if parallel is not None:
                await self.parallel.release(parallel)
