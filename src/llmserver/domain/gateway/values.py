"""What goes into the gateway and what comes out: requests, principals, results, policy.

``Call`` and ``Admission`` are the package's own records of one request on its way through;
everything else is re-exported by the package."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from llmserver.domain.cache_keys import CachePolicy
from llmserver.domain.errors import InvalidRequest
from llmserver.domain.inference import Completion, GenerationParams, Prompt, StreamEvent
from llmserver.domain.keys import ApiKey, Role
from llmserver.domain.logs import CacheStatus, Origin, RequestLog
from llmserver.domain.ports import InferenceBackend
from llmserver.domain.quota import Reservation
from llmserver.domain.ratelimit import RateDecision
from llmserver.domain.registry import ModelSpec

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
