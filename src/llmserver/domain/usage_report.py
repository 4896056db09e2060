"""The usage report: tokens, requests, cache hits, errors and cost over a date range,
summed by any of key, team, model and day (the request log's daily figures, expired days
included). Sums are exact: costs are integers of picodollars."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

from llmserver.domain.errors import InvalidRequest
from llmserver.domain.logs import DailyUsage

MAX_REPORT_DAYS = 366
"""The longest range one report covers: a year, leap day included."""


class Dimension(StrEnum):
    """What a report's rows are grouped by."""

    KEY = "key"
    TEAM = "team"
    MODEL = "model"
    DAY = "day"


ORDER = (Dimension.KEY, Dimension.TEAM, Dimension.MODEL, Dimension.DAY)
"""The order a report names its dimensions in, whatever order they were asked in."""
COLUMN_OF = {
    Dimension.DAY: "day",
    Dimension.KEY: "key_id",
    Dimension.TEAM: "team_id",
    Dimension.MODEL: "model",
}
"""Each dimension's column (a CSV's header, a JSON row's field)."""
ALL_DIMENSIONS = (Dimension.KEY, Dimension.MODEL, Dimension.DAY)
"""A report's grouping when none is asked for (as before teams: a team is asked for)."""


# Not frozen: summed into, one per group.
@dataclass(slots=True)
class UsageTotals:
    """One row of a report; a dimension it is not grouped by is ``None``."""

    day: date | None
    key_id: str | None
    model: str | None
    team_id: str | None = None
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    errors: int = 0
    cost_picodollars: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def report_range(first: date | None, last: date | None, today: date) -> tuple[date, date]:
    """``[first, last]`` as asked (both inclusive), defaulting to this month up to today;
    ``InvalidRequest`` naming the parameter when it is backwards or longer than allowed.
    Returns the first day and the day after the last."""
    first = first or today.replace(day=1)
    last = last or today
    if last < first:
        raise InvalidRequest(f"to ({last}) is before from ({first}).", param="to")
    days = (last - first).days + 1
    if days > MAX_REPORT_DAYS:
        raise InvalidRequest(
            f"from to to spans {days} days; ask for {MAX_REPORT_DAYS} at most per report.",
            param="to",
        )
    return first, last + timedelta(days=1)


def dimensions(text: str | None) -> tuple[Dimension, ...]:
    """``group_by`` as given (``key,model``); ``None`` or empty: key, model and day."""
    if not text or not text.strip():
        return ALL_DIMENSIONS
    chosen: list[Dimension] = []
    for name in (part.strip() for part in text.split(",")):
        try:
            dimension = Dimension(name)
        except ValueError:
            names = ", ".join(d.value for d in Dimension)
            raise InvalidRequest(
                f"Unknown group_by {name[:20]!r}: use any of {names}, comma-separated.",
                param="group_by",
            ) from None
        if dimension not in chosen:
            chosen.append(dimension)
    return tuple(d for d in ORDER if d in chosen)


def summed(rows: Iterable[DailyUsage], by: Sequence[Dimension]) -> list[UsageTotals]:
    """The rows summed per group of ``by``, in the order day, key, team, model (missing
    last)."""
    groups: dict[tuple[object, ...], UsageTotals] = {}
    for row in rows:
        totals = UsageTotals(
            row.day if Dimension.DAY in by else None,
            row.key_id if Dimension.KEY in by else None,
            row.model if Dimension.MODEL in by else None,
            row.team_id if Dimension.TEAM in by else None,
        )
        group = groups.setdefault((totals.day, totals.key_id, totals.team_id, totals.model), totals)
        group.requests += row.requests
        group.prompt_tokens += row.prompt_tokens
        group.completion_tokens += row.completion_tokens
        group.cache_hits += row.cache_hits
        group.errors += row.errors
        group.cost_picodollars += row.cost_picodollars
    return sorted(
        groups.values(),
        key=lambda t: (
            t.day or date.max,
            t.key_id or "\uffff",
            t.team_id or "\uffff",
            t.model or "\uffff",
        ),
    )
