"""The gateway use case: one completion through every policy, in order.

authenticate -> authorise model -> RPM -> hot cache -> count tokens / context check
-> quota reserve -> durable cache -> single-flight -> inference -> settle -> log -> cache store

The hot cache is asked before the prompt's tokens are counted: a hit carries the count the
same model and revision made of the same prompt when the answer was stored, so a hit never
runs the tokenizer (with its chat template, the larger part of a cached answer's cost on a
real model). It still reserves and passes every check a miss does.

Every admitted request holds a quota reservation that is closed exactly once: settled to
its real usage on success, released when it fails, settled to what was sent when a stream
is cut short. Every request writes exactly one log row.

Streaming runs the same checks and starts the stream before ``open_stream`` returns, so
refusals and errors before the first token become proper HTTP answers, and the stream's
``finally`` settles even if the caller never iterates or closes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from llmserver.domain.cache_keys import CachePolicy, cache_key, is_cacheable
from llmserver.domain.errors import (
    STATUS_BY_KIND,
    AuthReason,
    Cancelled,
    ContextLengthExceeded,
    Forbidden,
    GatewayError,
    InvalidRequest,
    ModelNotAllowed,
    Overloaded,
    QuotaExceeded,
    RateLimited,
    Unauthenticated,
    UpstreamError,
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
    InferenceBackend,
    KeyStore,
    ModelBackends,
    NullTelemetry,
    RateLimitStore,
    RowsRejected,
    Telemetry,
    UsageStore,
)
from llmserver.domain.quota import Reservation, period_of, period_reset_at, settle_amount
from llmserver.domain.ratelimit import RateDecision
from llmserver.domain.registry import MODEL_ID_MAX_CHARS, ModelRegistry, ModelSpec

TOUCH_INTERVAL = timedelta(seconds=60)


# Not frozen: built on every request's path (see ``RequestLog``).
@dataclass(slots=True)
class Principal:
    """An authenticated caller."""

    key: ApiKey

    @property
    def is_admin(self) -> bool:
        return self.key.role is Role.ADMIN


@dataclass(slots=True)
class CompletionRequest:
    """A request as the client sent it; ``None`` means "use the model's default".

    Not frozen, for the same reason as ``RequestLog``: one per request, never changed."""

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
    """An admitted streaming request: iterate ``events`` to run it, close it to stop."""

    model: ModelSpec
    cache_status: CacheStatus
    rate: RateDecision | None
    created: datetime
    events: AsyncIterator[StreamEvent]


LogSubmit = Callable[[RequestLog], object]
"""Hands a request-log row to the write-behind batcher; must not block."""


def generation_params(spec: ModelSpec, request: CompletionRequest) -> GenerationParams:
    """The request's sampling parameters with the model's defaults filled in."""
    max_tokens = spec.defaults.max_tokens if request.max_tokens is None else request.max_tokens
    if max_tokens < 1:
        raise InvalidRequest("max_tokens must be at least 1.", param="max_tokens")
    return GenerationParams(
        max_tokens=max_tokens,
        temperature=(
            spec.defaults.temperature if request.temperature is None else request.temperature
        ),
        top_p=spec.defaults.top_p if request.top_p is None else request.top_p,
        stop=request.stop,
        seed=request.seed,
    )


_REFUSAL_CAUSES: tuple[tuple[type[GatewayError], str], ...] = (
    (RateLimited, "rpm"),
    (QuotaExceeded, "quota"),
    (ContextLengthExceeded, "context_length"),
    (Overloaded, "queue_full"),
)


def _refusal_cause(exc: BaseException) -> str | None:
    return next((cause for kind, cause in _REFUSAL_CAUSES if isinstance(exc, kind)), None)


def _status_and_code(exc: BaseException) -> tuple[int, str]:
    """What a failed request's log row records."""
    if isinstance(exc, GatewayError):
        return exc.status, exc.code
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        # The client went away: the task was cancelled or the stream closed.
        return STATUS_BY_KIND[Cancelled.kind], Cancelled.code
    return 500, type(exc).__name__


@dataclass(slots=True)
class _Call:
    """One request on its way through the gateway: what its log row needs."""

    request_id: str
    principal: Principal
    request: CompletionRequest
    started: float
    at: datetime
    """When it arrived: the instant its rate limit and quota period are decided at."""
    stream: bool
    spec: ModelSpec | None = None


@dataclass(slots=True)
class _Admission:
    spec: ModelSpec
    backend: InferenceBackend
    params: GenerationParams
    prompt_tokens: int
    reservation: Reservation | None
    """``None`` once settled or released, so it is closed at most once."""
    rate: RateDecision | None
    cache_key: str | None
    admitted_at: float
    cached: Completion | None = None
    """The hot cache's answer, found before the tokens were counted."""
    cache_status: CacheStatus = CacheStatus.BYPASS


@dataclass(slots=True)
class _Flight:
    """One inference shared by identical concurrent requests."""

    task: asyncio.Task[Completion]
    waiters: int = 0


class _Events:
    """A started stream: the event already fetched by ``open_stream``, then the rest."""

    def __init__(self, first: StreamEvent, rest: AsyncGenerator[StreamEvent, None]) -> None:
        self._first: StreamEvent | None = first
        self._rest = rest

    def __aiter__(self) -> _Events:
        return self

    async def __anext__(self) -> StreamEvent:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return await anext(self._rest)

    async def aclose(self) -> None:
        self._first = None
        await self._rest.aclose()


class _BackendErrors:
    """Counts the backend's failures; a full queue is a refusal, not a failure.

    A class rather than ``@contextmanager``: it wraps a call on every request, and a
    generator-based context manager costs three times as much to enter and leave."""

    __slots__ = ("_model", "_telemetry")

    def __init__(self, telemetry: Telemetry, model: str) -> None:
        self._telemetry = telemetry
        self._model = model

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _: object
    ) -> None:
        if isinstance(exc, Exception) and not isinstance(exc, Overloaded):
            code = exc.code if isinstance(exc, GatewayError) else type(exc).__name__
            self._telemetry.backend_error(self._model, code)


async def _replay(cached: Completion) -> AsyncIterator[StreamEvent]:
    yield TextDelta(cached.text, cached.completion_tokens)
    yield StreamEnd(cached.finish_reason, cached.prompt_tokens, cached.completion_tokens)


def _unknown_model(request: CompletionRequest) -> str:
    """The model a request named, as its log row can hold it: no model id is longer than
    ``MODEL_ID_MAX_CHARS`` and PostgreSQL text cannot hold NUL (the row would be set aside).
    Only for names that resolved to no model, so never on a served request's path."""
    return request.model[:MODEL_ID_MAX_CHARS].replace("\x00", "\ufffd")


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
        telemetry: Telemetry | None = None,
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
        self._telemetry: Telemetry = telemetry or NullTelemetry()
        self._inflight: dict[str, _Flight] = {}
        self._closing: set[asyncio.Future[None]] = set()

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
        created = self._clock.now()
        call = _Call(request_id, principal, request, self._clock.monotonic(), created, stream=False)
        admission: _Admission | None = None
        try:
            admission = await self._admit(call)
            completion = await self._answer(admission, request.prompt)
            await self._settle(admission, completion.total_tokens)
        except BaseException as exc:
            if admission is not None and isinstance(exc, asyncio.CancelledError):
                # The client went away: it pays for its prompt, as for a stream cut before
                # its first token (the model took it in; leaving must not make work free),
                # and nothing for an answer it never received.
                read = Completion("", admission.prompt_tokens, 0, FinishReason.STOP)
                await self._fail(call, admission, exc, charge=read.total_tokens, completion=read)
            else:
                await self._fail(call, admission, exc)
            raise
        self._succeed(call, admission, completion)
        return Outcome(completion, admission.spec, admission.cache_status, admission.rate, created)

    async def open_stream(
        self, principal: Principal, request: CompletionRequest, request_id: str
    ) -> StreamSession:
        created = self._clock.now()
        call = _Call(request_id, principal, request, self._clock.monotonic(), created, stream=True)
        try:
            admission = await self._admit(call)
        except BaseException as exc:
            await self._fail(call, None, exc)
            raise
        rest = self._run_stream(call, admission)
        # Once started, the generator's own handlers settle and log on every path,
        # including a session that is dropped without being iterated or closed.
        first = await anext(rest)
        return StreamSession(
            admission.spec, admission.cache_status, admission.rate, created, _Events(first, rest)
        )

    # -- steps -----------------------------------------------------------------------

    async def _admit(self, call: _Call) -> _Admission:
        principal, request = call.principal, call.request
        spec = call.spec = self.model_for(principal, request.model)
        params = generation_params(spec, request)
        rate = await self._check_rate(principal, call.at)
        try:
            key = None
            if is_cacheable(params, self._policy.cache, opted_out=not request.use_cache):
                key = cache_key(
                    # Single-flight and both cache layers go by this key: per API key unless
                    # shared (see ``CachePolicy.shared_across_keys``).
                    owner=None if self._policy.cache.shared_across_keys else principal.key.id,
                    model_id=spec.id,
                    revision=spec.revision,
                    prompt=request.prompt,
                    params=params,
                )
            with self._backend_errors(spec.id):
                backend = self._backends.backend(spec.id)
            # Before the count: a hit carries its prompt's (see the module docstring).
            cached = await self._hot_lookup(key) if key is not None else None
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
                with self._backend_errors(spec.id):
                    prompt_tokens = await backend.count_tokens(request.prompt)
            if prompt_tokens + params.max_tokens > spec.context_length:
                raise ContextLengthExceeded(
                    prompt_tokens=prompt_tokens,
                    max_tokens=params.max_tokens,
                    context_length=spec.context_length,
                )
            # Last step: nothing after the reservation may fail before it is handed over.
            reservation = await self._reserve(principal, prompt_tokens + params.max_tokens, call.at)
        except GatewayError as exc:
            exc.rate = rate
            raise
        return _Admission(
            spec,
            backend,
            params,
            prompt_tokens,
            reservation,
            rate,
            key,
            self._clock.monotonic(),
            cached,
        )

    async def _check_rate(self, principal: Principal, at: datetime) -> RateDecision | None:
        limit = principal.key.rpm_limit
        if limit is None:
            return None
        now_ms = int(at.timestamp() * 1000)
        decision = await self._limiter.acquire(f"rpm:{principal.key.id}", limit, now_ms)
        if not decision.admitted:
            error = RateLimited(limit=limit, retry_after=decision.retry_after)
            error.rate = decision
            raise error
        return decision

    async def _reserve(self, principal: Principal, tokens: int, at: datetime) -> Reservation:
        quota = principal.key.quota_tokens
        period = period_of(at)
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

    async def _hot_lookup(self, key: str) -> Completion | None:
        if self._hot is None:
            return None
        hot = await self._hot.get(key)
        self._telemetry.cache_lookup("hot", hot is not None)
        return None if hot is None else hot.completion()

    async def _cached(self, admission: _Admission) -> Completion | None:
        """The hot cache's answer found at admission, else the durable layer's."""
        if admission.cached is not None or admission.cache_key is None:
            return admission.cached
        return await self._durable_lookup(admission.cache_key)

    async def _durable_lookup(self, key: str) -> Completion | None:
        """The durable layer, asked once the hot one missed; a hit refills the hot one."""
        now = self._clock.now()
        entry = await self._cache.get(key, now)
        self._telemetry.cache_lookup("durable", entry is not None)
        if entry is None:
            return None
        if self._hot is not None:
            remaining = int((entry.expires_at - now).total_seconds())
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
        try:
            await self._cache.put(entry)
        except RowsRejected:
            # The store cannot hold this answer (PostgreSQL's JSON refuses U+0000, which a
            # byte-level tokenizer can produce): it is served, just not cached.
            return
        if self._hot is not None:
            await self._hot.put(entry, self._policy.cache.ttl_seconds)

    async def _answer(self, admission: _Admission, prompt: Prompt) -> Completion:
        key = admission.cache_key
        if key is None:
            return await self._generate(admission, prompt)
        cached = await self._cached(admission)
        if cached is not None:
            admission.cache_status = CacheStatus.HIT
            return cached
        return await self._share(key, admission, prompt)

    async def _share(self, key: str, admission: _Admission, prompt: Prompt) -> Completion:
        """Join the running inference for ``key``, or start it.

        The inference runs in its own task so that the request that started it can go
        away without failing the others; it is cancelled when nobody waits any more.
        """
        flight = self._inflight.get(key)
        if flight is None:
            admission.cache_status = CacheStatus.MISS
            flight = _Flight(asyncio.create_task(self._generate_and_store(admission, prompt)))
            self._inflight[key] = flight
            flight.task.add_done_callback(partial(self._land, key, flight))
        else:
            # Served an answer it did not pay inference for: a (deduplicated) hit.
            admission.cache_status = CacheStatus.HIT
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                self._land(key, flight)
                flight.task.cancel()

    def _land(self, key: str, flight: _Flight, *_: object) -> None:
        if self._inflight.get(key) is flight:
            del self._inflight[key]

    async def _generate_and_store(self, admission: _Admission, prompt: Prompt) -> Completion:
        completion = await self._generate(admission, prompt)
        await self._store(admission, completion)
        return completion

    async def _generate(self, admission: _Admission, prompt: Prompt) -> Completion:
        started = self._clock.monotonic()
        with self._backend_errors(admission.spec.id):
            completion = await admission.backend.generate(prompt, admission.params)
        self._telemetry.generation(
            admission.spec.id, self._clock.monotonic() - started, completion.completion_tokens
        )
        return completion

    def _backend_errors(self, model: str) -> _BackendErrors:
        return _BackendErrors(self._telemetry, model)

    async def _settle(self, admission: _Admission, tokens: int) -> None:
        reservation, admission.reservation = admission.reservation, None
        if reservation is None:
            return
        hit = admission.cache_status is CacheStatus.HIT
        charged = 0 if hit and not self._policy.cache_hits_count_against_quota else tokens
        await self._usage.settle(
            reservation.key_id,
            reservation.period,
            reservation.tokens,
            settle_amount(reservation.tokens, charged),
            cache_hit=hit,
        )

    async def _release(self, admission: _Admission) -> None:
        reservation, admission.reservation = admission.reservation, None
        if reservation is not None:
            await self._usage.release(reservation.key_id, reservation.period, reservation.tokens)

    async def _run_stream(
        self, call: _Call, admission: _Admission
    ) -> AsyncGenerator[StreamEvent, None]:
        produced = 0
        text: list[str] = []
        try:
            key = admission.cache_key
            cached = await self._cached(admission)
            if cached is not None:
                admission.cache_status = CacheStatus.HIT
                events = _replay(cached)
            else:
                admission.cache_status = CacheStatus.BYPASS if key is None else CacheStatus.MISS
                events = admission.backend.stream(call.request.prompt, admission.params)
            stream_started = self._clock.monotonic()
            try:
                end: StreamEnd | None = None
                while end is None:
                    with self._backend_errors(admission.spec.id):
                        event = await anext(events, None)
                        if event is None:
                            raise UpstreamError("The model's stream ended without a final event.")
                    if isinstance(event, TextDelta):
                        if cached is None and not text:
                            self._telemetry.first_token(
                                admission.spec.id, self._clock.monotonic() - admission.admitted_at
                            )
                        produced += event.tokens
                        text.append(event.text)
                    else:
                        end = event
                        if cached is None:
                            self._telemetry.generation(
                                admission.spec.id,
                                self._clock.monotonic() - stream_started,
                                end.completion_tokens,
                            )
                    yield event
            finally:
                close = getattr(events, "aclose", None)
                if close is not None:
                    await close()
            completion = Completion(
                "".join(text), end.prompt_tokens, end.completion_tokens, end.finish_reason
            )
            await self._settle(admission, completion.total_tokens)
            if admission.cache_status is CacheStatus.MISS:
                await self._store(admission, completion)
        except BaseException as exc:
            # Cut short. A failure before anything was sent costs nothing, like a failed
            # non-streaming request; otherwise the client pays for what it was sent.
            sent = isinstance(exc, asyncio.CancelledError | GeneratorExit) or produced > 0
            if sent:
                sent_so_far = Completion("", admission.prompt_tokens, produced, FinishReason.STOP)
                await self._fail(
                    call, admission, exc, charge=sent_so_far.total_tokens, completion=sent_so_far
                )
            else:
                await self._fail(call, admission, exc)
            raise
        self._succeed(call, admission, completion)

    # -- outcomes --------------------------------------------------------------------

    def _succeed(self, call: _Call, admission: _Admission, completion: Completion) -> None:
        self._telemetry.tokens(
            admission.spec.id, completion.prompt_tokens, completion.completion_tokens
        )
        self._write_log(call, 200, completion, admission.cache_status)

    async def _fail(
        self,
        call: _Call,
        admission: _Admission | None,
        exc: BaseException,
        *,
        charge: int | None = None,
        completion: Completion | None = None,
    ) -> None:
        """Close the reservation (release, or settle to ``charge``) and log the failure."""
        try:
            if admission is not None:
                # A client that went away cancels this task, and the anyio cancel scope
                # around a streamed response re-cancels it at every await: close the
                # reservation in a task of its own so it is not left reserved forever.
                closing = asyncio.ensure_future(self._close(admission, charge))
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
                await asyncio.shield(closing)
        finally:
            cause = _refusal_cause(exc)
            if cause is not None:
                self._telemetry.refused(cause)
            status, code = _status_and_code(exc)
            self._write_log(
                call,
                status,
                completion,
                admission.cache_status if admission is not None else None,
                error_code=code,
            )

    async def _close(self, admission: _Admission, charge: int | None) -> None:
        if charge is None:
            await self._release(admission)
        else:
            await self._settle(admission, charge)

    def _write_log(
        self,
        call: _Call,
        status: int,
        completion: Completion | None,
        cache_status: CacheStatus | None,
        *,
        error_code: str | None = None,
    ) -> None:
        principal = call.principal
        self._log(
            RequestLog(
                request_id=call.request_id,
                created_at=self._clock.now(),
                route=call.request.route,
                status=status,
                latency_ms=(self._clock.monotonic() - call.started) * 1000,
                key_id=principal.key.id,
                key_prefix=principal.key.prefix,
                model=call.spec.id if call.spec is not None else _unknown_model(call.request),
                prompt_tokens=completion.prompt_tokens if completion else 0,
                completion_tokens=completion.completion_tokens if completion else 0,
                cache_status=cache_status,
                error_code=error_code,
                stream=call.stream,
                body=call.request.body,
            )
        )
