"""The live side of a routed model's deployments: slots, queue, breaker and latency.

``Deployments.acquire`` hands out a deployment for one attempt, its slot held until
``release``: the strategy's order among those whose circuit lets traffic through, whose
``Retry-After`` has passed and which have a free slot (``max_parallel``). When every such
deployment is full the request waits in one bounded queue per model; a full queue is
``Overloaded``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llmserver.domain.backend_ports import InferenceBackend
from llmserver.domain.errors import Overloaded
from llmserver.domain.inference import DeploymentStatus
from llmserver.domain.pricing import Prices
from llmserver.domain.registry import DeploymentSpec, Routing
from llmserver.domain.routing.breaker import BreakerPolicy, CircuitBreaker, CircuitState
from llmserver.domain.routing.strategy import Candidate, attempt_order

LATENCY_WEIGHT = 0.3
"""How much the newest time to first token moves a deployment's moving average."""


@dataclass(frozen=True, slots=True)
class DeploymentTimeouts:
    first_byte_s: float
    total_s: float


class Deployment:
    def __init__(
        self,
        spec: DeploymentSpec,
        backend: InferenceBackend | None,
        breaker: BreakerPolicy,
        timeouts: DeploymentTimeouts,
        prices: Prices,
        load_error: str | None = None,
    ) -> None:
        self.spec = spec
        self.prices = prices
        """What a request it answers costs (its own prices, else the model's)."""
        self.backend = backend
        """``None``: it failed to load (``load_error``) and never gets traffic."""
        self.load_error = load_error
        self.breaker = CircuitBreaker(breaker)
        self.timeouts = timeouts
        self.in_flight = 0
        self.latency_s: float | None = None
        self.not_before = 0.0
        """Monotonic time before which it asked (``Retry-After``) to be left alone."""
        self.requests = self.failures = self.retries = 0

    @property
    def name(self) -> str:
        return self.spec.name

    def usable(self, now: float) -> bool:
        return self.backend is not None and self.breaker.available(now) and now >= self.not_before

    def has_slot(self) -> bool:
        cap = self.spec.max_parallel
        return cap is None or self.in_flight < cap

    def measured(self, seconds: float) -> None:
        old = self.latency_s
        self.latency_s = seconds if old is None else old + LATENCY_WEIGHT * (seconds - old)

    def status(self, now: float) -> DeploymentStatus:
        state = "failed" if self.backend is None else self.breaker.state(now).value
        return DeploymentStatus(
            name=self.name,
            backend=self.spec.backend.value,
            state=state,
            healthy=state == CircuitState.CLOSED.value,
            in_flight=self.in_flight,
            max_parallel=self.spec.max_parallel,
            requests=self.requests,
            failures=self.failures,
            retries=self.retries,
            latency_s=self.latency_s,
        )


class NoneUsable(Exception):
    """No deployment may take traffic within the wait allowed (circuits open, or every
    one asked for longer than that); ``wait_s``: until the soonest one may."""

    def __init__(self, wait_s: float | None) -> None:
        super().__init__("no deployment usable")
        self.wait_s = wait_s


class Deployments:
    def __init__(
        self,
        model_id: str,
        deployments: Sequence[Deployment],
        routing: Routing,
        *,
        max_queue: int,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.model_id = model_id
        self.all = tuple(deployments)
        self._routing = routing
        self._max_queue = max_queue
        self._rng = rng or random.Random()
        self.clock = clock
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def first_loaded(self) -> InferenceBackend:
        """The backend that counts prompt tokens for the model: the first that loaded."""
        for deployment in self.all:
            if deployment.backend is not None:
                return deployment.backend
        raise RuntimeError(f"no deployment of model {self.model_id!r} loaded")

    async def acquire(self, tried: Sequence[Deployment]) -> Deployment:
        """A deployment with its slot held: one not yet ``tried`` by this request if any
        is usable, else the best again. Raises ``NoneUsable`` or ``Overloaded``."""
        while True:
            now = self.clock()
            usable = [d for d in self.all if d.usable(now)]
            if not usable:
                raise NoneUsable(self._soonest(now))
            fresh = [d for d in usable if d not in tried] or usable
            free = [d for d in fresh if d.has_slot()] or [d for d in usable if d.has_slot()]
            if free:
                chosen = self._best(free)
                chosen.in_flight += 1
                chosen.requests += 1
                chosen.breaker.on_attempt(now)
                return chosen
            await self._queue()

    def release(self, deployment: Deployment) -> None:
        deployment.in_flight -= 1
        self._wake_next()

    def _best(self, candidates: Sequence[Deployment]) -> Deployment:
        index = {id(d): i for i, d in enumerate(self.all)}
        snapshot = [
            Candidate(index[id(d)], d.spec.weight, d.in_flight, d.latency_s) for d in candidates
        ]
        return self.all[attempt_order(self._routing, snapshot, self._rng)[0]]

    def _soonest(self, now: float) -> float | None:
        """Seconds until some loaded deployment may take traffic again, if it is known."""
        waits = []
        for d in self.all:
            if d.backend is None:
                continue
            if d.breaker.state(now) is CircuitState.CLOSED and d.not_before > now:
                waits.append(d.not_before - now)
        return min(waits) if waits else None

    async def _queue(self) -> None:
        if len(self._waiters) >= self._max_queue:
            raise Overloaded(
                f"every deployment of model {self.model_id!r} is at its max_parallel and "
                f"{self._max_queue} requests already wait for one; retry shortly",
                retry_after=1.0,
            )
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # Woken, but leaving: the slot it was woken for goes to the next waiter.
                self._wake_next()
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake_next(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
