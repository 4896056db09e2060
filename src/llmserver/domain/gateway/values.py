"""What goes into the gateway and what comes out: requests, principals, results, policy.

``Call`` and ``Admission`` are the package's own records of one completion on its way
through, ``EmbeddingCall`` and ``EmbeddingAdmission`` of one embedding request; ``Logged``
and ``Admitted`` are what the steps both share (outcomes, the cache) need of either.
Everything else is re-exported by the package."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from llmserver.domain.backend_ports import EmbeddingBackend, InferenceBackend
from llmserver.domain.cache_keys import CachePolicy
from llmserver.domain.embeddings import EmbeddingRequest, Embeddings
from llmserver.domain.errors import InvalidRequest
from llmserver.domain.gateway.holds import Holds
from llmserver.domain.inference import Completion, GenerationParams, Prompt, StreamEvent
from llmserver.domain.keys import ApiKey, Role
from llmserver.domain.logs import CacheStatus, Origin, RequestLog
from llmserver.domain.output_constraint import OutputConstraint
from llmserver.domain.ports import KeyStore, TeamStore, UsageStore
from llmserver.domain.quota import Reservation
from llmserver.domain.ratelimit import RateDecision
from llmserver.domain.registry import ModelSpec
from llmserver.domain.teams import Team

TOUCH_INTERVAL = timedelta(seconds=60)

DEFAULT_MAX_N = 4
"""Half the default batch: a request's choices decode as rows of one batch, so ``n`` up to
the batch size would let one request hold every row while others queue."""


# Not frozen: built on every request's path (see ``RequestLog``).
@dataclass(slots=True)
class Principal:
    """An authenticated caller."""

    key: ApiKey
    team: Team | None = None
    """The key's team (``key.team_id``'s), read with the key: its limits cap the key's."""

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
    top_k: int | None = None
    """Sample from the k likeliest tokens; ``None``: from all."""
    stop: tuple[str, ...] = ()
    seed: int | None = None
    use_cache: bool = True
    constraint: OutputConstraint | None = None
    logprobs: int | None = None
    """``None``: none; ``k``: each token's log probability and the ``k`` likeliest."""
    n: int = 1
    """How many completions of the prompt."""


@dataclass(frozen=True, slots=True)
class GatewayPolicy:
    cache: CachePolicy = field(default_factory=CachePolicy)
    cache_hits_count_against_quota: bool = False
    max_n: int = DEFAULT_MAX_N
    """The most choices (``n``) one request may ask for."""


@dataclass(frozen=True, slots=True)
class Accounts:
    """Who may call: the keys, and the teams whose limits cap their keys'."""

    keys: KeyStore
    teams: TeamStore


@dataclass(frozen=True, slots=True)
class Ledgers:
    """The stores a request reserves in before it runs and settles or releases after."""

    quota: UsageStore
    """Tokens per key and month."""
    budget: UsageStore
    """Nanodollars per key and budget window (``domain.budget``)."""
    model_quota: UsageStore
    """Tokens per key, model and month (``ModelLimit.quota_tokens``), under
    ``quota.model_ledger_id``."""


@dataclass(slots=True)
class Outcome:
    """What the HTTP layer needs to answer a successful request."""

    completion: Completion
    model: ModelSpec
    cache_status: CacheStatus
    rate: RateDecision | None
    created: datetime
    token_rate: RateDecision | None = None
    """The key's TPM window at admission, for keys with a TPM limit."""


@dataclass(slots=True)
class StreamSession:
    """An admitted streaming request: iterate ``events`` to run it, close it to stop."""

    model: ModelSpec
    cache_status: CacheStatus
    rate: RateDecision | None
    created: datetime
    events: AsyncIterator[StreamEvent]
    prompt_tokens: int = 0
    """The prompt's size as admitted, for protocols that report it before the first text."""
    token_rate: RateDecision | None = None


@dataclass(slots=True)
class EmbeddingOutcome:
    """What the HTTP layer needs to answer a successful embedding request."""

    embeddings: Embeddings
    model: ModelSpec
    cache_status: CacheStatus
    rate: RateDecision | None
    token_rate: RateDecision | None = None


LogSubmit = Callable[[RequestLog], object]
"""Hands a request-log row to the write-behind batcher; must not block."""


def generation_params(
    spec: ModelSpec, request: CompletionRequest, max_n: int = DEFAULT_MAX_N
) -> GenerationParams:
    """The request's sampling parameters with the model's defaults filled in."""
    max_tokens = spec.defaults.max_tokens if request.max_tokens is None else request.max_tokens
    if max_tokens < 1:
        raise InvalidRequest("max_tokens must be at least 1.", param="max_tokens")
    if not 1 <= request.n <= max_n:
        raise InvalidRequest(
            f"n is {request.n}; this server gives 1 to {max_n} choices per request.", param="n"
        )
    return GenerationParams(
        max_tokens=max_tokens,
        temperature=(
            spec.defaults.temperature if request.temperature is None else request.temperature
        ),
        top_p=spec.defaults.top_p if request.top_p is None else request.top_p,
        top_k=request.top_k,
        stop=request.stop,
        seed=request.seed,
        constraint=request.constraint,
        logprobs=request.logprobs,
        n=request.n,
    )


@dataclass(slots=True)
class Call:
    """One request on its way through the gateway: what its log row needs."""

    origin: Origin
    principal: Principal
    request: CompletionRequest
    started: float
    at: datetime
    """When it arrived: the instant its rate limit and quota period are decided at."""
    stream: bool
    spec: ModelSpec | None = None


@dataclass(slots=True)
class Admission:
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
    holds: Holds | None = None
    """TPM and parallel holds, closed with ``reservation`` (``gateway.holds``)."""
    cost: int = 0
    """Picodollars charged, set when it settles."""


@dataclass(slots=True)
class EmbeddingCall:
    """One embedding request on its way through the gateway: what its log row needs."""

    origin: Origin
    principal: Principal
    request: EmbeddingRequest
    started: float
    at: datetime
    stream: bool = False
    spec: ModelSpec | None = None


@dataclass(slots=True)
class EmbeddingAdmission:
    spec: ModelSpec
    backend: EmbeddingBackend
    prompt_tokens: int
    reservation: Reservation | None
    rate: RateDecision | None
    cache_key: str | None
    cached: Completion | None = None
    """The hot cache's entry (the vectors as ``embeddings.to_cache_text``)."""
    cache_status: CacheStatus = CacheStatus.BYPASS
    holds: Holds | None = None
    cost: int = 0
    """Picodollars charged, set when it settles."""


class Asked(Protocol):
    @property
    def model(self) -> str:
        """The model name as the client sent it."""
        ...


class Logged(Protocol):
    """What a request's log row needs of its call, whichever surface it came by."""

    @property
    def origin(self) -> Origin: ...
    @property
    def principal(self) -> Principal: ...
    @property
    def request(self) -> Asked: ...
    @property
    def started(self) -> float: ...
    @property
    def stream(self) -> bool: ...
    @property
    def spec(self) -> ModelSpec | None: ...


class Admitted(Protocol):
    """What closing a request's reservation and caching its answer need of its
    admission, whichever surface it came by."""

    spec: ModelSpec
    prompt_tokens: int
    reservation: Reservation | None
    cache_key: str | None
    cached: Completion | None
    cache_status: CacheStatus
    holds: Holds | None
    cost: int
