"""The request log row: one per API request, written behind the response."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from enum import StrEnum

from llmserver.domain.errors import ErrorKind

REQUEST_ID_MAX_CHARS = 128
"""The longest request id a log row holds: a caller's ``X-Request-ID`` up to this long is
kept (tracing headers such as AWS's run past 64 characters), a longer one replaced."""


class CacheStatus(StrEnum):
    HIT = "HIT"
    MISS = "MISS"
    BYPASS = "BYPASS"


StatusOf = Callable[[ErrorKind | None], int]
"""How a surface numbers a request's end in its log row: ``None`` for an answered request,
else the kind of refusal or failure."""


# Not frozen: built on every request's path (see ``RequestLog``).
@dataclass(slots=True)
class Origin:
    """Where a request came in, as its log row records it.

    The surface that took the request fills it in; the gateway copies it into the row and
    never reads it. ``status_of`` is the surface's: the row holds the status its client
    was answered with, whatever protocol that was."""

    request_id: str
    route: str
    status_of: StatusOf
    body: str | None = None
    """The request body, only when body logging is switched on."""


# Not frozen: one is built per request, and a frozen dataclass sets each of its 14 fields
# through object.__setattr__ (six times the cost). Nothing changes a row once built.
@dataclass(slots=True)
class RequestLog:
    request_id: str
    created_at: datetime
    route: str
    status: int
    latency_ms: float
    key_id: str | None = None
    key_prefix: str | None = None
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_picodollars: int = 0
    """What the tokens cost at the model's prices (``pricing``); 0 for a cache hit unless
    hits count against quota."""
    cache_status: CacheStatus | None = None
    error_code: str | None = None
    stream: bool = False
    body: str | None = None
    """The request body, only when body logging is switched on."""
    deployment: str | None = None
    """Which deployment of a routed model answered (``fallback-model/deployment`` when a
    fallback model did), or for a failure the last one tried; ``None`` for a model served
    in one place, a cache hit or a failure before any deployment was tried."""
    attempts: int | None = None
    """Calls the request made across deployments and fallbacks; set with ``deployment``."""
    team_id: str | None = None
    """The key's team when the request was made (``domain.teams``); ``None``: none."""


@dataclass(frozen=True, slots=True)
class LogQuery:
    key_id: str | None = None
    model: str | None = None
    status: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    request_id: str | None = None
    cache_status: CacheStatus | None = None
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True, slots=True)
class DailyUsage:
    """What one key spent on one model in one UTC day, counted from its request-log rows.

    Rows that retention removed are counted from the roll-up written before they went, so
    the figures for a day are the same before and after its rows expire. ``team_id`` is
    the key's team when the requests were made, a dimension of the roll-up's grouping too
    (``sql.rollup.DIMENSIONS``): a key that changes team that day has a row per team.
    """

    day: date
    key_id: str | None
    model: str | None
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    errors: int = 0
    """Requests answered with a status of 400 or more."""
    cost_picodollars: int = 0
    team_id: str | None = None


def as_utc(at: datetime) -> datetime:
    """``at`` in UTC, as the stores compare it; a time with no offset is taken to be UTC.
    ValueError when UTC has no such time (0001-01-01T00:00+01:00, 9999-12-31T23:00-02:00)."""
    if at.tzinfo is None:
        return at.replace(tzinfo=UTC)
    try:
        return at.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{at.isoformat()} is outside the years 1 to 9999 in UTC.") from None


def day_bounds(since: date, until: date) -> tuple[datetime, datetime]:
    """The UTC instants at which the days ``since`` (included) and ``until`` (excluded) begin."""
    return (
        datetime.combine(since, time(), tzinfo=UTC),
        datetime.combine(until, time(), tzinfo=UTC),
    )
