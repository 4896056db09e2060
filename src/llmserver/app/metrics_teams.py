"""Tokens and spend per team, for the ``llmserver_team_*`` counters.

The ``team`` label is the team's name. Team names are created by admins, not clients, but
nothing bounds how many there are: the first ``TEAM_LABEL_LIMIT`` distinct names a process
sees get a series each, and every later one is counted under ``team="other"`` (a renamed
team's new name is a new one). Summed over ``team``, the counters stay exact either way;
``GET /admin/usage?group_by=team`` has every team's figures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter

TEAM_LABEL_LIMIT = 100
PICODOLLARS_PER_MICRODOLLAR = 1_000_000


def whole_microdollars(remainders: dict[Any, int], child: Any, picodollars: int) -> int:
    """The whole micro-dollars of ``child``'s spend so far not yet counted, keeping the
    rest in ``remainders``: its counter (a float, exact to 2^53 micro-dollars) is exactly
    the floor of the true sum."""
    micro, remainders[child] = divmod(
        remainders.get(child, 0) + picodollars, PICODOLLARS_PER_MICRODOLLAR
    )
    return micro


class TeamCounters:
    def __init__(
        self,
        registry: CollectorRegistry,
        label: Callable[[str], str],
        child: Callable[..., Any],
    ) -> None:
        """``label`` bounds the team names; ``child`` is ``Metrics``'s (a counter's child
        per label value)."""
        self._label = label
        self._child = child
        self._remainders: dict[Any, int] = {}
        self._tokens: dict[str, tuple[Any, Any]] = {}
        """Per label value (bounded by ``label``), its two token counters' children: one
        lookup per request, where resolving each child was two. (The spend child is
        made at the first spend, as before: a team that never spends has no series.)"""
        self._prompt = Counter(
            "llmserver_team_prompt_tokens",
            "Prompt tokens of served requests of keys in a team, by team name.",
            ["team"],
            registry=registry,
        )
        self._completion = Counter(
            "llmserver_team_completion_tokens",
            "Completion tokens of served requests of keys in a team, by team name.",
            ["team"],
            registry=registry,
        )
        self._spend = Counter(
            "llmserver_team_spend_microdollars",
            "What served requests of keys in a team cost, in whole micro-dollars, by team.",
            ["team"],
            registry=registry,
        )

    def add(
        self, pending: dict[Any, float], team: str, prompt: int, completion: int, picodollars: int
    ) -> None:
        """Count a request of ``team`` into ``pending`` (``Metrics``'s increments not yet
        added, which each render swaps for a new one)."""
        label = self._label(team)
        children = self._tokens.get(label)
        if children is None:
            children = self._tokens[label] = (
                self._child(self._prompt, label),
                self._child(self._completion, label),
            )
        prompt_child, completion_child = children
        pending[prompt_child] = pending.get(prompt_child, 0) + prompt
        pending[completion_child] = pending.get(completion_child, 0) + completion
        if not picodollars:  # a free model's request, a cache hit: nothing to add
            return
        spend = self._child(self._spend, label)
        micro = whole_microdollars(self._remainders, spend, picodollars)
        if micro:
            pending[spend] = pending.get(spend, 0) + micro
