"""The gateway use case: one completion through every policy, in order.

authenticate -> authorise model -> RPM -> count tokens / context check -> quota reserve
-> hot cache -> durable cache -> single-flight -> inference -> settle -> log -> cache store

Streaming runs the same checks eagerly (so refusals become proper HTTP answers before the
first byte) and settles in the stream's ``finally``, so a client that disconnects is
charged only for the tokens it was sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from llmserver.domain.cache_keys import CachePolicy, cache_key, is_cacheable
from llmserver.domain.errors import (
    AuthReason,
    Cancelled,
    ContextLengthExceeded,
    Forbidden,
    GatewayError,
    InvalidRequest,
    ModelNotAllowed,
    QuotaExceeded,
    RateLimited,
    Unauthenticated,
)
from llmserver.domain.inference import (
    Completion,
    FinishReason,
    GenerationParams,
    Prompt,
    StreamEnd,
    StreamEvent,
    TextDelta,
)
from llmserver.domain.keys import ApiKey, KeyHasher, Role, parse_prefix
from llmserver.domain.logs import CacheStatus, RequestLog
from llmserver.domain.ports import (
    CachedCompletion,
    Clock,
    CompletionCache,
    HotCache,
    KeyStore,
    ModelBackends,
    RateLimitStore,
    UsageStore,
)
from llmserver.domain.quota import Reservation, period_of, period_reset_at, settle_amount
from llmserver.domain.ratelimit import RateDecision
from llmserver.domain.registry import ModelRegistry, ModelSpec

TOUCH_INTERVAL = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    key: ApiKey

    @property
    def is_admin(self) -> bool:
        return self.key.role is Role.ADMIN


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """A request as the client sent it; ``None`` means "use the model's default"."""

    model: str
    prompt: Prompt
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    use_cache: bool = True
    route: str = "/v1/chat/completions"
    body: str | None = None


@dataclass(frozen=True, slots=True)
class GatewayPolicy:
    cache: CachePolicy = field(default_factory=CachePolicy)
    cache_hits_count_against_quota: bool = False


@dataclass(slots=True)
class Outcome:
    """What the HTTP layer needs to answer a successful request."""

    completion: Completion
    model: ModelSpec
    cache_status: CacheStatus
    rate: RateDecision | None
    created: datetime


@dataclass(slots=True)
class StreamSession:
    """An admitted streaming request: iterate ``events`` to run it."""

    model: ModelSpec
    cache_status: CacheStatus
    rate: RateDecision | None
    created: datetime
    events: AsyncIterator[StreamEvent]


LogSubmit = Callable[[RequestLog], None]
"""Hands a request-log row to the write-behind batcher; must not block."""


@dataclass(slots=True)
class _Admission:
    spec: ModelSpec
    params: GenerationParams
    prompt_tokens: int
    reservation: Reservation | None
    rate: RateDecision | None
    cache_key: str | None


class Gateway:
    def __init__(
        self,
        *,
        keys: KeyStore,
        hasher: KeyHasher,
        usage: UsageStore,
        limiter: RateLimitStore,
        cache: CompletionCache,
        hot_cache: HotCache | None,
        registry: ModelRegistry,
        backends: ModelBackends,
        clock: Clock,
        log: LogSubmit,
        policy: GatewayPolicy | None = None,
    ) -> None:
        self._keys = keys
        self._hasher = hasher
        self._usage = usage
        self._limiter = limiter
        self._cache = cache
        self._hot = hot_cache
        self._registry = registry
        self._backends = backends
        self._clock = clock
        self._log = log
        self._policy = policy or GatewayPolicy()
        self._inflight: dict[str, asyncio.Future[Completion]] = {}

    @property
    def registry(self) -> ModelRegistry:
        return self._registry

    # -- authentication and authorisation -------------------------------------------

    async def authenticate(self, presented: str | None) -> Principal:
        if not presented:
            raise Unauthenticated(AuthReason.MISSING)
        prefix = parse_prefix(presented)
        key = await self._keys.find_by_prefix(prefix)
        # Hash even when no key has that prefix so timing does not reveal which exist.
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
        return Principal(key)

    @staticmethod
    def require_admin(principal: Principal) -> None:
        if not principal.is_admin:
            raise Forbidden("This route needs an API key with the admin role.")

    def visible_models(self, principal: Principal) -> list[ModelSpec]:
        return [spec for spec in self._registry.all() if principal.key.may_use(spec.id)]

    def model_for(self, principal: Principal, name: str) -> ModelSpec:
        spec = self._registry.resolve(name)
        if not principal.key.may_use(spec.id):
            raise ModelNotAllowed(name)
        return spec

    # -- the use case ----------------------------------------------------------------

    async def complete(
        self, principal: Principal, request: CompletionRequest, request_id: str
    ) -> Outcome:
        started = time.perf_counter()
        created = self._clock.now()
        admission: _Admission | None = None
        cache_status = CacheStatus.BYPASS
        try:
            admission = await self._admit(principal, request)
            completion, cache_status = await self._answer(admission, request)
            await self._settle(admission, completion.total_tokens, cache_status)
            self._write_log(
                request_id,
                principal,
                request,
                admission.spec,
                200,
                started,
                completion,
                cache_status=cache_status,
            )
            return Outcome(completion, admission.spec, cache_status, admission.rate, created)
        except BaseException as exc:
            if admission is not None and admission.reservation is not None:
                await self._release(admission.reservation)
            self._log_failure(request_id, principal, request, admission, started, exc)
            raise

    async def open_stream(
        self, principal: Principal, request: CompletionRequest, request_id: str
    ) -> StreamSession:
        started = time.perf_counter()
        created = self._clock.now()
        try:
            admission = await self._admit(principal, request)
        except BaseException as exc:
            self._log_failure(request_id, principal, request, None, started, exc)
            raise
        cached: Completion | None = None
        if admission.cache_key is not None:
            try:
                cached = await self._lookup(admission.cache_key)
            except BaseException:
                await self._release_if_held(admission)
                raise
        status = CacheStatus.HIT if cached else self._miss_status(admission)
        events = self._run_stream(
            admission, request, request_id, principal, started, cached, status
        )
        return StreamSession(admission.spec, status, admission.rate, created, events)

    # -- steps -----------------------------------------------------------------------

    async def _admit(self, principal: Principal, request: CompletionRequest) -> _Admission:
        spec = self.model_for(principal, request.model)
        params = self._params(spec, request)
        rate = await self._check_rate(principal)
        backend = self._backends.backend(spec.id)
        prompt_tokens = await backend.count_tokens(request.prompt)
        if prompt_tokens + params.max_tokens > spec.context_length:
            raise ContextLengthExceeded(
                prompt_tokens=prompt_tokens,
                max_tokens=params.max_tokens,
                context_length=spec.context_length,
            )
        try:
            reservation = await self._reserve(principal, prompt_tokens + params.max_tokens)
        except GatewayError as exc:
            exc.rate = rate
            raise
        key = None
        if is_cacheable(params, self._policy.cache, opted_out=not request.use_cache):
            key = cache_key(
                model_id=spec.id, revision=spec.revision, prompt=request.prompt, params=params
            )
        return _Admission(spec, params, prompt_tokens, reservation, rate, key)

    @staticmethod
    def _params(spec: ModelSpec, request: CompletionRequest) -> GenerationParams:
        max_tokens = spec.defaults.max_tokens if request.max_tokens is None else request.max_tokens
        if max_tokens < 1:
            raise InvalidRequest("max_tokens must be at least 1.", param="max_tokens")
        temperature = (
            spec.defaults.temperature if request.temperature is None else request.temperature
        )
        top_p = spec.defaults.top_p if request.top_p is None else request.top_p
        return GenerationParams(
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=request.stop,
            seed=request.seed,
        )

    async def _check_rate(self, principal: Principal) -> RateDecision | None:
        limit = principal.key.rpm_limit
        if limit is None:
            return None
        now_ms = int(self._clock.now().timestamp() * 1000)
        decision = await self._limiter.acquire(f"rpm:{principal.key.id}", limit, now_ms)
        if not decision.admitted:
            error = RateLimited(limit=limit, retry_after=decision.retry_after)
            error.rate = decision
            raise error
        return decision

    async def _reserve(self, principal: Principal, tokens: int) -> Reservation | None:
        quota = principal.key.quota_tokens
        period = period_of(self._clock.now())
        result = await self._usage.reserve(principal.key.id, period, tokens, quota)
        if not result.admitted:
            assert quota is not None
            raise QuotaExceeded(
                needed=tokens,
                remaining=result.record.remaining(quota),
                quota=quota,
                reset_at=period_reset_at(period),
            )
        return Reservation(principal.key.id, period, tokens)

    def _miss_status(self, admission: _Admission) -> CacheStatus:
        return CacheStatus.MISS if admission.cache_key is not None else CacheStatus.BYPASS

    async def _lookup(self, key: str) -> Completion | None:
        if self._hot is not None:
            hot = await self._hot.get(key)
            if hot is not None:
                return hot.completion()
        entry = await self._cache.get(key, self._clock.now())
        if entry is None:
            return None
        if self._hot is not None:
            remaining = int((entry.expires_at - self._clock.now()).total_seconds())
            if remaining > 0:
                await self._hot.put(entry, remaining)
        return entry.completion()

    async def _store(self, admission: _Admission, completion: Completion) -> None:
        assert admission.cache_key is not None
        now = self._clock.now()
        entry = CachedCompletion(
            key=admission.cache_key,
            model=admission.spec.id,
            text=completion.text,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            finish_reason=completion.finish_reason,
            created_at=now,
            expires_at=now + timedelta(seconds=self._policy.cache.ttl_seconds),
        )
        await self._cache.put(entry)
        if self._hot is not None:
            await self._hot.put(entry, self._policy.cache.ttl_seconds)

    async def _answer(
        self, admission: _Admission, request: CompletionRequest
    ) -> tuple[Completion, CacheStatus]:
        key = admission.cache_key
        if key is None:
            return await self._infer(admission, request), CacheStatus.BYPASS
        cached = await self._lookup(key)
        if cached is not None:
            return cached, CacheStatus.HIT
        leader = self._inflight.get(key)
        if leader is not None:
            # Identical request already running: share its answer (deduplicated -> HIT).
            return await asyncio.shield(leader), CacheStatus.HIT
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            completion = await self._infer(admission, request)
            await self._store(admission, completion)
        except BaseException as exc:
            future.set_exception(exc)
            # Followers see the error; nobody else awaits it if there were none.
            future.exception()
            raise
        else:
            future.set_result(completion)
        finally:
            del self._inflight[key]
        return completion, CacheStatus.MISS

    async def _infer(self, admission: _Admission, request: CompletionRequest) -> Completion:
        backend = self._backends.backend(admission.spec.id)
        return await backend.generate(request.prompt, admission.params)

    async def _settle(self, admission: _Admission, tokens: int, status: CacheStatus) -> None:
        reservation = admission.reservation
        if reservation is None:
            return
        hit = status is CacheStatus.HIT
        charged = 0 if hit and not self._policy.cache_hits_count_against_quota else tokens
        await self._usage.settle(
            reservation.key_id,
            reservation.period,
            reservation.tokens,
            settle_amount(reservation.tokens, charged),
            cache_hit=hit,
        )

    async def _release(self, reservation: Reservation) -> None:
        await self._usage.release(reservation.key_id, reservation.period, reservation.tokens)

    async def _release_if_held(self, admission: _Admission) -> None:
        if admission.reservation is not None:
            await self._release(admission.reservation)

    async def _run_stream(
        self,
        admission: _Admission,
        request: CompletionRequest,
        request_id: str,
        principal: Principal,
        started: float,
        cached: Completion | None,
        status: CacheStatus,
    ) -> AsyncIterator[StreamEvent]:
        produced_tokens = 0
        text: list[str] = []
        end: StreamEnd | None = None
        failure: BaseException | None = None
        try:
            if cached is not None:
                yield TextDelta(cached.text, cached.completion_tokens)
                end = StreamEnd(
                    cached.finish_reason, cached.prompt_tokens, cached.completion_tokens
                )
                yield end
                return
            backend = self._backends.backend(admission.spec.id)
            events = backend.stream(request.prompt, admission.params)
            try:
                async for event in events:
                    if isinstance(event, TextDelta):
                        produced_tokens += event.tokens
                        text.append(event.text)
                    else:
                        end = event
                    yield event
            finally:
                await events.aclose()  # type: ignore[attr-defined]
        except BaseException as exc:
            failure = exc
            raise
        finally:
            await self._finish_stream(
                admission,
                request,
                request_id,
                principal,
                started,
                status,
                end,
                produced_tokens,
                "".join(text),
                failure,
            )

    async def _finish_stream(
        self,
        admission: _Admission,
        request: CompletionRequest,
        request_id: str,
        principal: Principal,
        started: float,
        status: CacheStatus,
        end: StreamEnd | None,
        produced_tokens: int,
        text: str,
        failure: BaseException | None,
    ) -> None:
        if end is not None:
            completion = Completion(
                text, end.prompt_tokens, end.completion_tokens, end.finish_reason
            )
            await self._settle(admission, completion.total_tokens, status)
            if admission.cache_key is not None and status is CacheStatus.MISS:
                await self._store(admission, completion)
            self._write_log(
                request_id,
                principal,
                request,
                admission.spec,
                200,
                started,
                completion,
                cache_status=status,
                stream=True,
            )
            return
        # Cut short (client gone, timeout, backend failure): charge what was produced.
        await self._settle(admission, admission.prompt_tokens + produced_tokens, CacheStatus.MISS)
        error = failure if isinstance(failure, GatewayError) else Cancelled("stream cut short")
        self._write_log(
            request_id,
            principal,
            request,
            admission.spec,
            error.status,
            started,
            Completion("", admission.prompt_tokens, produced_tokens, FinishReason.STOP),
            cache_status=status,
            error_code=error.code,
            stream=True,
        )

    # -- logging ---------------------------------------------------------------------

    def _write_log(
        self,
        request_id: str,
        principal: Principal | None,
        request: CompletionRequest,
        spec: ModelSpec | None,
        status: int,
        started: float,
        completion: Completion | None,
        *,
        cache_status: CacheStatus | None = None,
        error_code: str | None = None,
        stream: bool = False,
    ) -> None:
        self._log(
            RequestLog(
                request_id=request_id,
                created_at=self._clock.now(),
                route=request.route,
                status=status,
                latency_ms=(time.perf_counter() - started) * 1000,
                key_id=principal.key.id if principal else None,
                key_prefix=principal.key.prefix if principal else None,
                model=spec.id if spec else request.model,
                prompt_tokens=completion.prompt_tokens if completion else 0,
                completion_tokens=completion.completion_tokens if completion else 0,
                cache_status=cache_status,
                error_code=error_code,
                stream=stream,
                body=request.body,
            )
        )

    def _log_failure(
        self,
        request_id: str,
        principal: Principal,
        request: CompletionRequest,
        admission: _Admission | None,
        started: float,
        exc: BaseException,
    ) -> None:
        error = exc if isinstance(exc, GatewayError) else None
        if error is None and not isinstance(exc, asyncio.CancelledError | Exception):
            return
        status = (
            error.status if error else (499 if isinstance(exc, asyncio.CancelledError) else 500)
        )
        code = error.code if error else type(exc).__name__
        self._write_log(
            request_id,
            principal,
            request,
            admission.spec if admission else None,
            status,
            started,
            None,
            error_code=code,
        )
