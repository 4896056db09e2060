"""The circuit breaker's state machine, against a model of it under random histories."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from llmserver.domain.routing.breaker import BreakerPolicy, CircuitBreaker, CircuitState

POLICY = BreakerPolicy(failure_threshold=3, cooldown_s=10.0)


def test_consecutive_failures_open_it_then_one_probe_after_the_cooldown() -> None:
    breaker = CircuitBreaker(POLICY)
    for now in (0.0, 1.0):
        breaker.on_attempt(now)
        breaker.on_failure(now)
    assert breaker.state(1.0) is CircuitState.CLOSED
    assert breaker.available(1.0)
    breaker.on_attempt(2.0)
    breaker.on_failure(2.0)
    assert breaker.state(2.0) is CircuitState.OPEN
    assert not breaker.available(11.9)
    assert breaker.state(12.0) is CircuitState.HALF_OPEN
    assert breaker.available(12.0)
    breaker.on_attempt(12.0)  # the probe
    assert not breaker.available(12.5)  # one at a time
    breaker.on_failure(13.0)  # the probe failed: open for another cool-down
    assert breaker.state(22.9) is CircuitState.OPEN
    breaker.on_attempt(23.0)
    breaker.on_success()
    assert breaker.state(23.0) is CircuitState.CLOSED
    assert breaker.available(23.0)


def test_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(POLICY)
    for _ in range(5):
        breaker.on_failure(0.0)
        breaker.on_failure(0.0)
        breaker.on_success()
    assert breaker.state(0.0) is CircuitState.CLOSED


def test_an_abandoned_probe_lets_the_next_request_probe() -> None:
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=1, cooldown_s=1.0))
    breaker.on_failure(0.0)
    breaker.on_attempt(1.0)
    assert not breaker.available(1.0)
    breaker.on_abandoned()
    assert breaker.available(1.0)


events = st.lists(
    st.tuples(st.sampled_from(["attempt", "success", "failure", "abandon"]), st.floats(0, 5)),
    max_size=60,
)


@given(events)
def test_it_behaves_as_its_model(history: list[tuple[str, float]]) -> None:
    """A reference model: open after ``threshold`` failures in a row (or a failed probe),
    closed by any success, half-open once the cool-down has passed."""
    breaker = CircuitBreaker(POLICY)
    now, failures, opened_at, probing = 0.0, 0, None, False
    for event, step in history:
        now += step
        half_open = opened_at is not None and (probing or now - opened_at >= POLICY.cooldown_s)
        expected = (
            CircuitState.CLOSED
            if opened_at is None
            else CircuitState.HALF_OPEN
            if half_open
            else CircuitState.OPEN
        )
        assert breaker.state(now) is expected
        assert breaker.available(now) == (
            expected is CircuitState.CLOSED or (half_open and not probing)
        )
        if event == "attempt":
            breaker.on_attempt(now)
            probing = probing or half_open
        elif event == "success":
            breaker.on_success()
            failures, opened_at, probing = 0, None, False
        elif event == "failure":
            breaker.on_failure(now)
            failures += 1
            if probing or failures >= POLICY.failure_threshold:
                opened_at, probing = now, False
        else:
            breaker.on_abandoned()
            probing = False
