"""Which deployment a request tries first, and which next: an order over the candidates.

Pure: each candidate is a snapshot of one deployment (``Candidate``), and randomness comes
from the caller's ``random.Random`` (a fixed seed makes a run repeatable).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from llmserver.domain.registry import Routing


@dataclass(frozen=True, slots=True)
class Candidate:
    index: int
    """Its position in the model's config (the order ``ordered`` follows)."""
    weight: int
    in_flight: int
    latency_s: float | None
    """Moving average of its time to first token; ``None`` until it has answered."""


def attempt_order(
    routing: Routing, candidates: Sequence[Candidate], rng: random.Random
) -> list[int]:
    """The candidates' indexes, best first, as ``routing`` ranks them.

    Weighted: drawn without replacement in proportion to the weights, so the first pick
    converges to the weights and a retry goes elsewhere. Least-busy: fewest in flight,
    ties by config order. Latency: lowest average first; one never measured goes first so
    it gets measured. Ordered: config order."""
    if routing is Routing.WEIGHTED:
        return _weighted(candidates, rng)
    if routing is Routing.LEAST_BUSY:
        ranked = sorted(candidates, key=lambda c: (c.in_flight, c.index))
    elif routing is Routing.LATENCY:
        ranked = sorted(
            candidates,
            key=lambda c: (c.latency_s is not None, c.latency_s or 0.0, c.in_flight, c.index),
        )
    else:
        ranked = sorted(candidates, key=lambda c: c.index)
    return [c.index for c in ranked]


def _weighted(candidates: Sequence[Candidate], rng: random.Random) -> list[int]:
    left = list(candidates)
    order: list[int] = []
    while left:
        total = sum(c.weight for c in left)
        point = rng.uniform(0, total)
        for position, candidate in enumerate(left):
            point -= candidate.weight
            if point <= 0 or position == len(left) - 1:
                order.append(candidate.index)
                del left[position]
                break
    return order
