"""Admission: every check a request passes before it is answered, in order.

model -> RPM -> cache key -> hot cache -> token floor / count -> context check -> TPM and
parallel holds -> the key's quota on the model -> the key's quota -> budget reservation (all
or nothing: a later refusal releases every earlier hold). A key in a team passes each limit
of the team's right after the key's own (the RPM window, the TPM and parallel holds, the
quota, the budget). The hot cache is asked before the prompt's tokens are counted (see the
package docstring), and the reservation is the last step, so nothing after it can fail
before the admission is handed over."""

from __future__ import annotations

import asyncio
from datetime import datetime

from llmserver.domain.backend_ports import ModelBackends
from llmserver.domain.budget import nanodollars_of, window_reset_at
from llmserver.domain.cache_keys import CachePolicy, cache_key, is_cacheable
from llmserver.domain.errors import (
    ContextLengthExceeded,
    GatewayError,
    ModelNotAllowed,
    QuotaExceeded,
    RateLimited,
    WrongModelKind,
)
from llmserver.domain.gateway.closing import close_all
from llmserver.domain.gateway.holds import Holds, Limits
from llmserver.domain.gateway.ledger_holds import hold_spend, hold_tokens
from llmserver.domain.gateway.outcomes import BackendErrors
from llmserver.domain.gateway.team_ledgers import TeamLedgers
from llmserver.domain.gateway.values import (
    DEFAULT_MAX_N,
    Admission,
    Call,
    Ledgers,
    Principal,
    generation_params,
)
from llmserver.domain.inference import Completion, GenerationParams
from llmserver.domain.key_limits import ModelLimit
from llmserver.domain.ports import Clock, HotCache, Telemetry
from llmserver.domain.quota import Reservation, model_ledger_id, period_of
from llmserver.domain.ratelimit import RateDecision
from llmserver.domain.registry import ModelKind, ModelRegistry, ModelSpec


def model_limit_of(principal: Principal, model_id: str) -> ModelLimit | None:
    """The key's own limits on ``model_id``, looked up once per request: a key without any
    pays one tuple test."""
    key = principal.key
    return key.model_limit(model_id) if key.model_limits else None


def holds_cost(principal: Principal) -> bool:
    """Whether a request of ``principal`` holds its worst-case cost: its key or its team
    has a budget."""
    team = principal.team
    return principal.key.budget_nanodollars is not None or (
        team is not None and team.budget_nanodollars is not None
    )


def _admitted(
    decision: RateDecision, *, model: str | None = None, team: str | None = None
) -> RateDecision:
    """``decision``, an RPM window's answer, if it admits; else its refusal, naming the
    key's window on ``model`` or the ``team``'s (neither: the key's own). A check in line
    rather than a coroutine around the store's call: that was a frame more per window on
    every request."""
    if decision.admitted:
        return decision
    on = f" on model {model}" if model is not None else ""
    if team is not None:
        on = f" for team '{team}'"
    limit, wait = decision.limit, decision.retry_after
    error = RateLimited(
        limit=limit,
        retry_after=wait,
        message=f"Rate limit reached: {limit} requests per minute{on}. Try again in {wait:.3f}s.",
    )
    error.rate = decision
    raise error


class Admissions:
    def __init__(
        self,
        *,
        registry: ModelRegistry,
        backends: ModelBackends,
        limits: Limits,
        ledgers: Ledgers,
        hot_cache: HotCache | None,
        clock: Clock,
        telemetry: Telemetry,
        policy: CachePolicy,
        max_n: int = DEFAULT_MAX_N,
    ) -> None:
        self._registry = registry
        self._backends = backends
        self._limiter = limits.requests
        self._limits = limits
        self._usage = ledgers.quota
        self._budget = ledgers.budget
        self._model_quota = ledgers.model_quota
        self._teams = TeamLedgers(ledgers)
        self._hot = hot_cache
        self._clock = clock
        self._telemetry = telemetry
        self._policy = policy
        self._max_n = max_n

    def model_for(self, principal: Principal, name: str) -> ModelSpec:
        spec = self._registry.resolve(name)
        if not principal.key.may_use(spec.id):
            raise ModelNotAllowed(name)
        return spec

    def chat_model_for(self, principal: Principal, name: str) -> ModelSpec:
        """``model_for``, refusing a model that does not generate text."""
        spec = self.model_for(principal, name)
        if spec.kind is not ModelKind.CHAT:
            raise WrongModelKind(
                spec.id, kind="an embedding", surface="completions", instead="/v1/embeddings"
            )
        return spec

    async def admit(self, call: Call) -> Admission:
        principal, request = call.principal, call.request
        spec = call.spec = self.chat_model_for(principal, request.model)
        params = generation_params(spec, request, self._max_n)
        own = model_limit_of(principal, spec.id)
        rate = await self.check_rate(principal, call.at, own)
        try:
            while True:
                try:
                    admission = await self._fit(call, spec, params)
                    break
                except ContextLengthExceeded:
                    # Too long for this model: a longer one it names takes the request
                    # (its log row, prices and quota charge are that model's).
                    larger = self._context_fallback(principal, spec)
                    if larger is None:
                        raise
                    spec = call.spec = larger
                    params = generation_params(spec, request, self._max_n)
                    own = model_limit_of(principal, spec.id)  # its TPM on the key, too
            # Last step: nothing after the reservation may fail before it is handed over.
            # Once, for the model that will answer (a context fallback's prices and limits);
            # each choice may take max_tokens, the prompt is read once. The cost held is
            # the dearest of wherever the model may have it answered (deployments,
            # fallbacks): settlement charges what answered.
            prompt_tokens, most = admission.prompt_tokens, params.n * params.max_tokens
            admission.reservation, admission.holds = await self.reserve(
                principal,
                prompt_tokens + most,
                call.at,
                # Only a budget holds a cost: others skip the prices' lookup.
                self._registry.worst_cost(spec, prompt_tokens, most)
                if holds_cost(principal)
                else 0,
                own,
            )
        except GatewayError as exc:
            exc.rate = rate
            raise
        admission.rate = rate
        admission.admitted_at = self._clock.monotonic()
        return admission

    async def _fit(self, call: Call, spec: ModelSpec, params: GenerationParams) -> Admission:
        """The admission of ``call`` to ``spec`` up to its quota reservation: its cache key,
        a hot hit, and its prompt counted and checked against the context length."""
        principal, request = call.principal, call.request
        key = None
        if is_cacheable(params, self._policy, opted_out=not request.use_cache):
            key = cache_key(
                # Single-flight and both cache layers go by this key: per API key unless
                # shared (see ``CachePolicy.shared_across_keys``).
                owner=None if self._policy.shared_across_keys else principal.key.id,
                model_id=spec.id,
                revision=spec.revision,
                prompt=request.prompt,
                params=params,
            )
        with BackendErrors(self._telemetry, spec.id):
            backend = self._backends.backend(spec.id)
        # Before the count: a hit carries its prompt's (see the package docstring).
        cached = await self.hot_lookup(key) if key is not None else None
        if cached is not None:
            prompt_tokens = cached.prompt_tokens
        else:
            # Length alone may prove it too long: then it is never tokenized.
            floor = backend.min_prompt_tokens(request.prompt)
            if floor + params.max_tokens > spec.context_length:
                raise ContextLengthExceeded(
                    prompt_tokens=floor,
                    max_tokens=params.max_tokens,
                    context_length=spec.context_length,
                    at_least=True,
                )
            with BackendErrors(self._telemetry, spec.id):
                prompt_tokens = await backend.count_tokens(request.prompt)
        if prompt_tokens + params.max_tokens > spec.context_length:
            raise ContextLengthExceeded(
                prompt_tokens=prompt_tokens,
                max_tokens=params.max_tokens,
                context_length=spec.context_length,
            )
        return Admission(spec, backend, params, prompt_tokens, None, None, key, 0.0, cached)

    def _context_fallback(self, principal: Principal, spec: ModelSpec) -> ModelSpec | None:
        """The longer model ``spec`` sends prompts too long for it to, if the key may use
        it (the registry checked that it is a longer chat model)."""
        if spec.context_fallback is None:
            return None
        larger = self._registry.by_id[spec.context_fallback]
        return larger if principal.key.may_use(larger.id) else None

    async def check_rate(
        self, principal: Principal, at: datetime, own: ModelLimit | None
    ) -> RateDecision | None:
        """Take a slot of the key's RPM window on the model (``own``: ``model_limit_of``),
        then of its own; the answer's headers show the tighter. The model's first: a
        request its tight limit refuses then takes none of the key's total (an RPM slot,
        once taken, is not given back: refused requests count, as they always have for
        later refusals)."""
        key = principal.key
        acquire, now_ms = self._limiter.acquire, int(at.timestamp() * 1000)
        decision = None
        if own is not None and own.rpm_limit is not None:
            bucket = f"rpm:{key.id}:{own.model_id}"
            decision = _admitted(await acquire(bucket, own.rpm_limit, now_ms), model=own.model_id)
        limit = key.rpm_limit
        if limit is not None:
            key_decision = _admitted(await acquire(f"rpm:{key.id}", limit, now_ms))
            if decision is None or key_decision.remaining <= decision.remaining:
                decision = key_decision
        team = principal.team
        if team is not None and team.rpm_limit is not None:
            # After the key's: a request its key refuses takes none of what the team's
            # other keys share.
            bucket = f"rpm:team:{team.id}"
            team_decision = _admitted(await acquire(bucket, team.rpm_limit, now_ms), team=team.name)
            if decision is None or team_decision.remaining <= decision.remaining:
                decision = team_decision
        return decision

    async def reserve(
        self,
        principal: Principal,
        tokens: int,
        at: datetime,
        worst_cost: int,
        own: ModelLimit | None,
    ) -> tuple[Reservation, Holds | None]:
        """Every hold of ``tokens`` the key's limits ask for, all or nothing: the TPM and
        parallel holds (``gateway.holds``, with the key's limits on the model, ``own``),
        then the quota reservation, then, for a key with a budget, ``worst_cost``
        (picodollars) of it."""
        key = principal.key
        # In line, not a call: the cache-hit path of a key without these limits pays three
        # attribute tests for them.
        holds = (
            await self._limits.take(key, tokens, at, own)
            if key.tpm_limit is not None
            or key.max_parallel is not None
            or (own is not None and own.tpm_limit is not None)
            else None
        )
        team = principal.team
        if team is not None:
            holds = await self._limits.take_team(team, tokens, at, holds)
        quota = key.quota_tokens
        period = period_of(at)
        model_ledger = ""
        try:
            # A local test for a key without model limits; the model's quota first, as its
            # RPM and TPM: a request it refuses holds none of the key's total.
            if own is not None and own.quota_tokens is not None:
                model_ledger = await self._hold_model_quota(key.id, own, tokens, period)
            result = await self._usage.reserve(key.id, period, tokens, quota)
        except BaseException:
            await asyncio.shield(self._release_model_quota(model_ledger, period, tokens, holds))
            raise
        if not result.admitted:
            await asyncio.shield(self._release_model_quota(model_ledger, period, tokens, holds))
            assert quota is not None
            raise QuotaExceeded(
                needed=tokens,
                remaining=result.record.remaining(quota),
                quota=quota,
                reset_at=window_reset_at(period),
            )
        reservation = Reservation(key.id, period, tokens, model_ledger)
        if team is not None or (worst_cost and key.budget_nanodollars is not None):
            try:
                if worst_cost and key.budget_nanodollars is not None:
                    await self._hold_budget(principal, reservation, nanodollars_of(worst_cost), at)
                if team is not None:
                    await self._teams.reserve(team, reservation, nanodollars_of(worst_cost), at)
            except BaseException:
                # Shielded: a cancelled request must not leave its other holds taken.
                await asyncio.shield(self._release(reservation, holds))
                raise
        return reservation, holds

    async def _hold_model_quota(
        self, key_id: str, own: ModelLimit, tokens: int, period: str
    ) -> str:
        """Reserve ``tokens`` of the key's monthly quota on ``own``'s model, or refuse
        naming the model; the ledger id held under."""
        ledger = model_ledger_id(key_id, own.model_id)
        await hold_tokens(
            self._model_quota, ledger, period, tokens, own.quota_tokens, model=own.model_id
        )
        return ledger

    async def _release_model_quota(
        self, ledger: str, period: str, tokens: int, holds: Holds | None
    ) -> None:
        """Give back what ``reserve`` held before the key's quota refused or failed: the
        per-model quota's tokens (``ledger``; "": none) and ``holds``."""
        await close_all(
            self._model_quota.release(ledger, period, tokens) if ledger else None,
            None if holds is None else self._limits.release(holds),
        )

    async def _release(self, reservation: Reservation, holds: Holds | None) -> None:
        """Give back every hold a refused request took: ``reservation`` records which."""
        await close_all(
            self._usage.release(reservation.key_id, reservation.period, reservation.tokens),
            self._release_model_quota(
                reservation.model_ledger, reservation.period, reservation.tokens, holds
            ),
            self._budget.release(reservation.key_id, reservation.budget_period, reservation.budget)
            if reservation.budget
            else None,
            self._teams.release(reservation),
        )

    async def _hold_budget(
        self, principal: Principal, reservation: Reservation, needed: int, at: datetime
    ) -> None:
        key = principal.key
        budget = key.budget_nanodollars
        assert budget is not None
        period = await hold_spend(self._budget, key.id, budget, key.budget_window, needed, at)
        reservation.budget_period = period
        reservation.budget = needed

    async def hot_lookup(self, key: str) -> Completion | None:
        if self._hot is None:
            return None
        hot = await self._hot.get(key)
        self._telemetry.cache_lookup("hot", hot is not None)
        return None if hot is None else hot.completion()
