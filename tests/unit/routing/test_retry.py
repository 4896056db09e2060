"""Which failures earn another attempt, the backoff, and ``Retry-After``."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmserver.domain.errors import (
    Cancelled,
    ContextLengthExceeded,
    GenerationTimeout,
    InvalidRequest,
    Overloaded,
    Unavailable,
    UpstreamError,
)
from llmserver.domain.routing.retry import RetryPolicy, Verdict, judge, parse_retry_after


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (UpstreamError("refused"), Verdict(retry=True, unhealthy=True)),
        (UpstreamError("502", upstream_status=502), Verdict(retry=True, unhealthy=True)),
        (UpstreamError("401", upstream_status=401), Verdict(retry=True, unhealthy=True)),
        (UpstreamError("404", upstream_status=404), Verdict(retry=True, unhealthy=False)),
        (GenerationTimeout("slow"), Verdict(retry=True, unhealthy=True)),
        (Unavailable("loading"), Verdict(retry=True, unhealthy=True)),
        (Overloaded("429", retry_after=7), Verdict(retry=True, unhealthy=False, retry_after_s=7)),
        (InvalidRequest("bad"), Verdict(retry=False, unhealthy=False)),
        (
            ContextLengthExceeded(prompt_tokens=9, max_tokens=1, context_length=8),
            Verdict(retry=False, unhealthy=False),
        ),
        (Cancelled("gone"), Verdict(retry=False, unhealthy=False)),
        (TimeoutError(), Verdict(retry=True, unhealthy=True)),
    ],
)
def test_judge(error: BaseException, verdict: Verdict) -> None:
    assert judge(error) == verdict


def test_backoff_doubles_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=6, backoff_s=0.1, max_wait_s=0.5)
    assert [policy.backoff_before(n) for n in range(1, 7)] == [0.0, 0.1, 0.2, 0.4, 0.5, 0.5]


@given(st.integers(1, 50), st.floats(0, 10), st.floats(0, 10))
def test_no_wait_exceeds_the_cap(attempt: int, backoff: float, cap: float) -> None:
    assert 0 <= RetryPolicy(backoff_s=backoff, max_wait_s=cap).backoff_before(attempt) <= cap


def test_a_request_waits_only_for_a_known_retry_after_within_the_cap() -> None:
    policy = RetryPolicy(max_wait_s=2.0)
    assert policy.may_wait(2.0)
    assert not policy.may_wait(2.1)
    assert not policy.may_wait(None)


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after(" 30 ", now) == 30.0
    assert parse_retry_after("Tue, 01 Dec 2026 12:00:45 GMT", now) == 45.0
    assert parse_retry_after("Tue, 01 Dec 2026 11:00:00 GMT", now) == 0.0
    for garbage in ("", "soon", "-5", "1.5e3"):
        assert parse_retry_after(garbage, now) is None


def test_policies_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
