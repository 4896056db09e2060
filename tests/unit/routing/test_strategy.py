"""The order in which a request tries a model's deployments, for each strategy."""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from llmserver.domain.registry import Routing
from llmserver.domain.routing.strategy import Candidate, attempt_order


def candidates(*weights: int, in_flight: tuple[int, ...] = ()) -> list[Candidate]:
    busy = in_flight or (0,) * len(weights)
    return [Candidate(i, w, busy[i], None) for i, w in enumerate(weights)]


def test_weighted_first_picks_converge_to_the_weights() -> None:
    rng = random.Random(1234)
    pool = candidates(3, 1, 6)
    draws = 20_000
    firsts = Counter(attempt_order(Routing.WEIGHTED, pool, rng)[0] for _ in range(draws))
    for index, weight in enumerate((3, 1, 6)):
        # Binomial standard deviation at p = 0.6 over 20,000 draws is about 0.0035.
        assert abs(firsts[index] / draws - weight / 10) < 0.015


def test_least_busy_picks_the_idle_one() -> None:
    pool = candidates(1, 1, 1, in_flight=(4, 0, 2))
    assert attempt_order(Routing.LEAST_BUSY, pool, random.Random(0)) == [1, 2, 0]


def test_latency_tries_an_unmeasured_one_first_then_the_fastest() -> None:
    pool = [
        Candidate(0, 1, 0, 0.30),
        Candidate(1, 1, 0, 0.05),
        Candidate(2, 1, 0, None),
    ]
    assert attempt_order(Routing.LATENCY, pool, random.Random(0)) == [2, 1, 0]


def test_ordered_follows_the_config() -> None:
    pool = list(reversed(candidates(1, 5, 1, in_flight=(9, 0, 3))))
    assert attempt_order(Routing.ORDERED, pool, random.Random(0)) == [0, 1, 2]


@given(
    st.sampled_from(list(Routing)),
    st.lists(st.tuples(st.integers(1, 10), st.integers(0, 50)), min_size=1, max_size=8),
    st.integers(0, 2**32),
)
def test_every_order_is_a_permutation_of_the_candidates(
    routing: Routing, raw: list[tuple[int, int]], seed: int
) -> None:
    pool = [Candidate(i * 2, w, busy, None) for i, (w, busy) in enumerate(raw)]
    order = attempt_order(routing, pool, random.Random(seed))
    assert sorted(order) == sorted(c.index for c in pool)
