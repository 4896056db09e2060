"""A deployment's circuit breaker: passive health from the outcomes of real requests.

Closed: traffic flows; ``failure_threshold`` failures in a row open it. Open: no traffic
until ``cooldown_s`` has passed. Then half-open: one request (the probe) goes through; its
success closes the circuit, its failure opens it for another cool-down. Times are the
caller's monotonic seconds, so the machine is tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_threshold: int = 3
    cooldown_s: float = 10.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.cooldown_s < 0:
            raise ValueError("a breaker opens after >= 1 failure and cools down >= 0 s")


class CircuitBreaker:
    def __init__(self, policy: BreakerPolicy) -> None:
        self._policy = policy
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    def state(self, now: float) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._probing or now - self._opened_at >= self._policy.cooldown_s:
            return CircuitState.HALF_OPEN
        return CircuitState.OPEN

    def available(self, now: float) -> bool:
        """Whether a request may be sent now (a half-open circuit takes one at a time)."""
        state = self.state(now)
        return state is CircuitState.CLOSED or (
            state is CircuitState.HALF_OPEN and not self._probing
        )

    def on_attempt(self, now: float) -> None:
        """A request goes out; through a half-open circuit it is the probe."""
        if self.state(now) is CircuitState.HALF_OPEN:
            self._probing = True

    def on_success(self) -> None:
        self._failures, self._opened_at, self._probing = 0, None, False

    def on_failure(self, now: float) -> None:
        self._failures += 1
        if self._probing or self._failures >= self._policy.failure_threshold:
            self._opened_at, self._probing = now, False

    def on_abandoned(self) -> None:
        """The request ended with no verdict on the deployment (the client left, or the
        request was refused as invalid): a probe's turn goes to the next request."""
        self._probing = False
