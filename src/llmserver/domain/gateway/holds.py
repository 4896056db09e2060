"""What a request holds besides its quota reservation: a TPM window entry and a parallel
slot, taken all or nothing and closed exactly once with the reservation.

Taken in order of cost to refuse: the parallel slot (no tokens asked), then the TPM entry;
the quota reservation comes last (``Admissions.reserve``). When a later one refuses or
fails (a store down, the request cancelled), the earlier ones are given back before the
refusal is raised, so a refused request leaves no hold anywhere. Every hold is given back
even when giving back another failed or was cancelled (``closing.close_all``).

A key's per-model TPM limit (``ModelLimit``) is a second TPM entry, in a bucket of the key
and model, taken before the key's own: both or neither, settled and released together.

A key in a team (``domain.teams``) also holds a parallel slot and a TPM entry in the team's
buckets (``take_team``, after the key's own: a request the key refuses never holds any of
the team's, which its other keys share); a refusal there gives back the key's holds too.

A key without a TPM limit, ``max_parallel`` or model limits takes nothing here:
``Admissions.reserve`` tests the three attributes in line and does not call in."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime

from llmserver.domain.errors import ParallelLimited, TokenRateLimited, TooLargeForTokenRate
from llmserver.domain.gateway.closing import close_all
from llmserver.domain.key_limits import ModelLimit
from llmserver.domain.keys import ApiKey
from llmserver.domain.ports import ParallelStore, RateLimitStore, TokenRateStore
from llmserver.domain.ratelimit import RateDecision
from llmserver.domain.teams import Team
from llmserver.domain.token_rate import TokenHold, TokenReservation


# Not frozen: built on every request's path of a key with such limits (see ``RequestLog``).
@dataclass(slots=True)
class Holds:
    tokens: TokenHold | None
    parallel: str | None
    """The parallel bucket a slot is held in."""
    token_rate: RateDecision | None
    """The TPM decision, for the ``x-ratelimit-*-tokens`` headers (the tighter of the
    key's and the model's)."""
    model_tokens: TokenHold | None = None
    """The entry in the key's per-model TPM window."""
    team_tokens: TokenHold | None = None
    """The entry in the key's team's TPM window."""
    team_parallel: str | None = None
    """The team's parallel bucket a slot is held in."""


class Limits:
    """A key's rate limits: the RPM window (``requests``, checked first, by ``Admissions``)
    and the holds above."""

    def __init__(
        self, *, requests: RateLimitStore, tokens: TokenRateStore, parallel: ParallelStore
    ) -> None:
        self.requests = requests
        self.tokens = tokens
        self.parallel = parallel

    async def take(
        self, key: ApiKey, tokens: int, at: datetime, own: ModelLimit | None = None
    ) -> Holds:
        """Hold a parallel slot and ``tokens`` of the key's TPM window and of its window
        on the model (``own``, the key's limits on it), all or none; refuse with
        ``ParallelLimited``, ``TokenRateLimited`` or ``TooLargeForTokenRate``."""
        holds = Holds(None, None, None)
        limit = key.tpm_limit
        if limit is not None and tokens > limit:
            raise TooLargeForTokenRate(needed=tokens, limit=limit)
        model_limit = None if own is None else own.tpm_limit
        if own is not None and model_limit is not None and tokens > model_limit:
            raise TooLargeForTokenRate(needed=tokens, limit=model_limit, model=own.model_id)
        most = key.max_parallel
        if most is not None:
            bucket = f"par:{key.id}"
            if not await self.parallel.acquire(bucket, most):
                raise ParallelLimited(limit=most)
            holds.parallel = bucket
        if limit is None and model_limit is None:
            return holds
        now_ms = int(at.timestamp() * 1000)
        try:
            # The model's window first: a request it refuses never holds (even for a
            # moment) any of the key's total, which the key's other models share.
            if own is not None and model_limit is not None:
                # Bucketed by key and model: a key id is hex, so no model id can make two
                # pairs share a bucket.
                bucket = f"tpm:{key.id}:{own.model_id}"
                taken = await self.tokens.reserve(bucket, model_limit, tokens, now_ms)
                holds.model_tokens = self._counted(holds, taken, tokens, model=own.model_id)
            if limit is not None:
                taken = await self.tokens.reserve(f"tpm:{key.id}", limit, tokens, now_ms)
                holds.tokens = self._counted(holds, taken, tokens)
        except BaseException:
            await self.release(holds)
            raise
        return holds

    async def take_team(
        self, team: Team, tokens: int, at: datetime, holds: Holds | None
    ) -> Holds | None:
        """Add to the key's ``holds`` a parallel slot and ``tokens`` of the TPM window of
        its ``team``, all or none: on a refusal (naming the team) or a failure every hold,
        the key's too, is given back."""
        limit, most = team.tpm_limit, team.max_parallel
        if limit is None and most is None:
            return holds
        if holds is None:
            holds = Holds(None, None, None)
        try:
            if limit is not None and tokens > limit:
                raise TooLargeForTokenRate(needed=tokens, limit=limit, team=team.name)
            if most is not None:
                bucket = f"par:team:{team.id}"
                if not await self.parallel.acquire(bucket, most):
                    raise ParallelLimited(limit=most, team=team.name)
                holds.team_parallel = bucket
            if limit is not None:
                bucket = f"tpm:team:{team.id}"
                taken = await self.tokens.reserve(bucket, limit, tokens, int(at.timestamp() * 1000))
                holds.team_tokens = self._counted(holds, taken, tokens, team=team.name)
        except BaseException:
            await self.release(holds)
            raise
        return holds

    @staticmethod
    def _counted(
        holds: Holds, taken: TokenReservation, tokens: int, **whose: str
    ) -> TokenHold | None:
        """The hold of ``taken``, a TPM window's answer to ``tokens``; its decision becomes
        ``holds``'s for the headers when it is the tighter (or refuses). A refusal names
        ``whose`` window it was (``model=``, ``team=``; the key's: nothing). Not a
        coroutine around the store's call: each one is a frame more per request."""
        decision = taken.decision
        if not decision.admitted:
            holds.token_rate = decision
            raise TokenRateLimited(needed=tokens, decision=decision, **whose)
        if holds.token_rate is None or decision.remaining < holds.token_rate.remaining:
            holds.token_rate = decision
        return taken.hold

    async def release(self, holds: Holds) -> None:
        """The request failed before using anything: every hold is given back."""
        await close_all(*self.closes(holds, None))

    def closes(self, holds: Holds, used: int | None) -> list[Awaitable[None]]:
        """The store calls that close every hold ``holds`` has, taken out of it so each is
        closed once: its TPM entries settled to ``used`` (``None``: released) and its
        parallel slots given back. For the caller's ``close_all``, with its other closes:
        one flat list, where a ``close_all`` per level was three more coroutines on each
        request of a key with these limits. In the request's task, one after the other: a
        task of their own and a gather cost such a hit five tasks and as many turns of the
        event loop (105 -> 250 µs in process), though in-memory stores never wait."""
        tokens = self.tokens
        closing: list[Awaitable[None]] = []
        for hold in (holds.tokens, holds.model_tokens, holds.team_tokens):
            if hold is not None:
                closing.append(tokens.release(hold) if used is None else tokens.settle(hold, used))
        for bucket in (holds.parallel, holds.team_parallel):
            if bucket is not None:
                closing.append(self.parallel.release(bucket))
        holds.tokens = holds.model_tokens = holds.team_tokens = None
        holds.parallel = holds.team_parallel = None
        return closing
