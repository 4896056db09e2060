"""The embedding use case: the completion's policy path, with vectors for an answer.

authorise model (an embedding model) -> RPM -> hot cache -> count tokens / per-input
length check -> quota reserve (the inputs' tokens) -> durable cache -> single-flight
-> embed -> settle -> log -> cache store

Every step is the completion's own object (``Admissions``, ``Answers``, ``Outcomes``), so
keys, model access, RPM, quota, both cache layers, request logs and metrics behave as
they do for a completion; only what is counted and produced differs. The cache holds the
vectors as text (``embeddings.to_cache_text``) in a ``Completion`` with no completion
tokens, under keys no completion can have (``cache_keys.embedding_cache_key``).
"""

from __future__ import annotations

from functools import partial

from llmserver.domain.backend_ports import ModelBackends
from llmserver.domain.cache_keys import CachePolicy, embedding_cache_key
from llmserver.domain.embeddings import (
    EmbeddingRequest,
    Embeddings,
    from_cache_text,
    to_cache_text,
)
from llmserver.domain.errors import GatewayError, InputTooLong, WrongModelKind
from llmserver.domain.gateway.admission import Admissions, holds_cost, model_limit_of
from llmserver.domain.gateway.answering import Answers
from llmserver.domain.gateway.outcomes import BackendErrors, Outcomes
from llmserver.domain.gateway.values import (
    EmbeddingAdmission,
    EmbeddingCall,
    EmbeddingOutcome,
    Principal,
)
from llmserver.domain.inference import Completion, FinishReason
from llmserver.domain.logs import CacheStatus, Origin
from llmserver.domain.ports import Clock, Telemetry
from llmserver.domain.registry import ModelKind


def _as_completion(embeddings: Embeddings) -> Completion:
    """The form the log, the quota and the response cache take an answer in."""
    return Completion(
        to_cache_text(embeddings.vectors), embeddings.prompt_tokens, 0, FinishReason.STOP
    )


class EmbeddingUseCase:
    def __init__(
        self,
        *,
        admissions: Admissions,
        answers: Answers,
        outcomes: Outcomes,
        backends: ModelBackends,
        clock: Clock,
        telemetry: Telemetry,
        policy: CachePolicy,
    ) -> None:
        self._admissions = admissions
        self._answers = answers
        self._outcomes = outcomes
        self._backends = backends
        self._clock = clock
        self._telemetry = telemetry
        self._policy = policy

    async def embed(
        self, principal: Principal, request: EmbeddingRequest, origin: Origin
    ) -> EmbeddingOutcome:
        clock = self._clock
        call = EmbeddingCall(origin, principal, request, clock.monotonic(), clock.now())
        admission: EmbeddingAdmission | None = None
        try:
            admission = await self._admit(call)
            embeddings = await self._answer(admission, request)
            used = Completion("", embeddings.prompt_tokens, 0, FinishReason.STOP)
            await self._outcomes.settle(admission, used)
        except BaseException as exc:
            await self._outcomes.abort(call, admission, exc)
            raise
        self._outcomes.succeed(call, admission, used)
        holds = admission.holds
        return EmbeddingOutcome(
            embeddings,
            admission.spec,
            admission.cache_status,
            admission.rate,
            None if holds is None else holds.token_rate,
        )

    async def _admit(self, call: EmbeddingCall) -> EmbeddingAdmission:
        principal, request, admissions = call.principal, call.request, self._admissions
        spec = call.spec = admissions.model_for(principal, request.model)
        if spec.kind is not ModelKind.EMBEDDING:
            raise WrongModelKind(
                spec.id,
                kind="a chat",
                surface="embeddings",
                instead="/v1/chat/completions or /v1/completions",
            )
        own = model_limit_of(principal, spec.id)
        rate = await admissions.check_rate(principal, call.at, own)
        try:
            key = None
            if self._policy.enabled and request.use_cache:
                key = embedding_cache_key(
                    owner=None if self._policy.shared_across_keys else principal.key.id,
                    model_id=spec.id,
                    revision=spec.revision,
                    inputs=request.inputs,
                    dimensions=request.dimensions,
                )
            with BackendErrors(self._telemetry, spec.id):
                backend = self._backends.embedder(spec.id)
            cached = await admissions.hot_lookup(key) if key is not None else None
            if cached is not None:
                tokens = cached.prompt_tokens
            else:
                with BackendErrors(self._telemetry, spec.id):
                    counts = await backend.count_tokens(request.inputs)
                for index, count in enumerate(counts):
                    if count > spec.context_length:
                        raise InputTooLong(
                            index=index, tokens=count, context_length=spec.context_length
                        )
                tokens = sum(counts)
            reservation, holds = await admissions.reserve(
                principal,
                tokens,
                call.at,
                spec.prices.cost(tokens, 0) if holds_cost(principal) else 0,
                own,
            )
        except GatewayError as exc:
            exc.rate = rate
            raise
        return EmbeddingAdmission(
            spec, backend, tokens, reservation, rate, key, cached, holds=holds
        )

    async def _answer(self, admission: EmbeddingAdmission, request: EmbeddingRequest) -> Embeddings:
        if admission.cache_key is None:
            return await self._run(admission, request)
        cached = await self._answers.cached(admission)
        if cached is not None:
            admission.cache_status = CacheStatus.HIT
        else:
            cached = await self._answers.join(admission, partial(self._produce, admission, request))
        return Embeddings(from_cache_text(cached.text), cached.prompt_tokens)

    async def _produce(
        self, admission: EmbeddingAdmission, request: EmbeddingRequest
    ) -> Completion:
        return _as_completion(await self._run(admission, request))

    async def _run(self, admission: EmbeddingAdmission, request: EmbeddingRequest) -> Embeddings:
        started = self._clock.monotonic()
        with BackendErrors(self._telemetry, admission.spec.id):
            embeddings = await admission.backend.embed(request.inputs, request.dimensions)
        self._telemetry.generation(admission.spec.id, self._clock.monotonic() - started, 0)
        return embeddings
