"""The gateway use case: authentication, the model list, and one completion composed of
admission, answering, streaming and outcomes (see the package docstring for the order)."""

from __future__ import annotations

from llmserver.domain.backend_ports import ModelBackends
from llmserver.domain.embeddings import EmbeddingRequest
from llmserver.domain.errors import AuthReason, Forbidden, Unauthenticated
from llmserver.domain.gateway.admission import Admissions, model_limit_of
from llmserver.domain.gateway.answering import Answers
from llmserver.domain.gateway.embedding import EmbeddingUseCase
from llmserver.domain.gateway.holds import Limits
from llmserver.domain.gateway.outcomes import BackendErrors, Outcomes
from llmserver.domain.gateway.streaming import Events, Streams
from llmserver.domain.gateway.values import (
    TOUCH_INTERVAL,
    Accounts,
    Admission,
    Call,
    CompletionRequest,
    EmbeddingOutcome,
    GatewayPolicy,
    Ledgers,
    LogSubmit,
    Outcome,
    Principal,
    StreamSession,
)
from llmserver.domain.inference import Completion, Prompt
from llmserver.domain.keys import KeyHasher, parse_prefix
from llmserver.domain.logs import Origin
from llmserver.domain.null_telemetry import NullTelemetry
from llmserver.domain.ports import Clock, CompletionCache, HotCache, Telemetry
from llmserver.domain.registry import ModelRegistry, ModelSpec
from llmserver.domain.single_flight import SingleFlight
from llmserver.domain.teams import Team


class Gateway:
    def __init__(
        self,
        *,
        accounts: Accounts,
        hasher: KeyHasher,
        ledgers: Ledgers,
        limits: Limits,
        cache: CompletionCache,
        hot_cache: HotCache | None,
        registry: ModelRegistry,
        backends: ModelBackends,
        clock: Clock,
        log: LogSubmit,
        policy: GatewayPolicy | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        policy = policy or GatewayPolicy()
        sink: Telemetry = telemetry or NullTelemetry()
        self._keys = accounts.keys
        self._teams = accounts.teams
        self._hasher = hasher
        self._registry = registry
        self._clock = clock
        self._backends = backends
        self._telemetry = sink
        # An inference nobody waits for any more is not worth finishing.
        self._inflight: SingleFlight[str, Completion] = SingleFlight(cancel_unwaited=True)
        self._admissions = Admissions(
            registry=registry,
            backends=backends,
            limits=limits,
            ledgers=ledgers,
            hot_cache=hot_cache,
            clock=clock,
            telemetry=sink,
            policy=policy.cache,
            max_n=policy.max_n,
        )
        self._answers = Answers(
            cache=cache,
            hot_cache=hot_cache,
            clock=clock,
            telemetry=sink,
            policy=policy.cache,
            flights=self._inflight,
        )
        self._outcomes = Outcomes(
            ledgers=ledgers,
            limits=limits,
            clock=clock,
            log=log,
            telemetry=sink,
            cache_hits_count_against_quota=policy.cache_hits_count_against_quota,
        )
        self._streams = Streams(
            answers=self._answers, outcomes=self._outcomes, clock=clock, telemetry=sink
        )
        self._embeddings = EmbeddingUseCase(
            admissions=self._admissions,
            answers=self._answers,
            outcomes=self._outcomes,
            backends=backends,
            clock=clock,
            telemetry=sink,
            policy=policy.cache,
        )

    @property
    def registry(self) -> ModelRegistry:
        return self._registry

    # -- authentication and authorisation -------------------------------------------

    async def authenticate(self, presented: str | None) -> Principal:
        if not presented:
            raise Unauthenticated(AuthReason.MISSING)
        prefix = parse_prefix(presented)
        key = await self._keys.find_by_prefix(prefix)
        # Hash even when no key has that prefix so timing does not reveal which exist (the
        # server's key cache keeps misses as it keeps hits, for the same reason).
        candidate_hash = key.key_hash if key is not None else "0" * 64
        if not self._hasher.verify(presented, candidate_hash) or key is None:
            raise Unauthenticated(AuthReason.INVALID)
        now = self._clock.now()
        if key.revoked_at is not None:
            raise Unauthenticated(AuthReason.REVOKED)
        if key.expires_at is not None and key.expires_at <= now:
            raise Unauthenticated(AuthReason.EXPIRED)
        if key.last_used_at is None or now - key.last_used_at >= TOUCH_INTERVAL:
            await self._keys.touch(key.id, now)
        if key.team_id is None:
            return Principal(key)
        return Principal(key, await self._team_of(key.team_id))

    async def _team_of(self, team_id: str) -> Team:
        # From the team cache (``adapters.team_cache``) on the server: no round trip.
        team = await self._teams.get(team_id)
        if team is None:  # the foreign key keeps a key's team: say so if it ever happens
            raise Forbidden("This API key's team no longer exists.")
        return team

    @staticmethod
    def require_admin(principal: Principal) -> None:
        if not principal.is_admin:
            raise Forbidden("This route needs an API key with the admin role.")

    def visible_models(self, principal: Principal) -> list[ModelSpec]:
        return [spec for spec in self._registry.all() if principal.key.may_use(spec.id)]

    def model_for(self, principal: Principal, name: str) -> ModelSpec:
        return self._admissions.model_for(principal, name)

    # -- the use case ----------------------------------------------------------------

    async def complete(
        self, principal: Principal, request: CompletionRequest, origin: Origin
    ) -> Outcome:
        created = self._clock.now()
        call = Call(origin, principal, request, self._clock.monotonic(), created, stream=False)
        outcomes = self._outcomes
        admission: Admission | None = None
        try:
            admission = await self._admissions.admit(call)
            completion = await self._answers.answer(admission, request.prompt)
            await outcomes.settle(admission, completion)
        except BaseException as exc:
            await outcomes.abort(call, admission, exc)
            raise
        outcomes.succeed(call, admission, completion)
        holds = admission.holds
        return Outcome(
            completion,
            admission.spec,
            admission.cache_status,
            admission.rate,
            created,
            None if holds is None else holds.token_rate,
        )

    async def embed(
        self, principal: Principal, request: EmbeddingRequest, origin: Origin
    ) -> EmbeddingOutcome:
        """Vectors for ``request``'s inputs, through the same policy as a completion."""
        return await self._embeddings.embed(principal, request, origin)

    async def open_stream(
        self, principal: Principal, request: CompletionRequest, origin: Origin
    ) -> StreamSession:
        created = self._clock.now()
        call = Call(origin, principal, request, self._clock.monotonic(), created, stream=True)
        try:
            admission = await self._admissions.admit(call)
        except BaseException as exc:
            await self._outcomes.fail(call, None, exc)
            raise
        rest = self._streams.run(call, admission)
        # Once started, the generator's own handlers settle and log on every path,
        # including a session that is dropped without being iterated or closed.
        first = await anext(rest)
        return StreamSession(
            admission.spec,
            admission.cache_status,
            admission.rate,
            created,
            Events(first, rest),
            admission.prompt_tokens,
            None if admission.holds is None else admission.holds.token_rate,
        )

    async def count_tokens(self, principal: Principal, model: str, prompt: Prompt) -> int:
        """The prompt's size in ``model``'s tokens, as admission counts it for the quota;
        the key must be allowed the model. It takes one of the key's RPM slots, as any
        request does, but no quota and no log row: counting is the tokenizer's work, on the
        model's one encoding thread that every request's prompt waits for, so an unlimited
        stream of large counts from one key would delay every other key's requests."""
        spec = self._admissions.chat_model_for(principal, model)
        own = model_limit_of(principal, spec.id)
        await self._admissions.check_rate(principal, self._clock.now(), own)
        with BackendErrors(self._telemetry, spec.id):
            backend = self._backends.backend(spec.id)
            return await backend.count_tokens(prompt)
