"""The ports: what the domain core needs from the outside world.

Each is a small ``typing.Protocol``; adapters (memory, SQL, Redis, inference) implement
them, naming the ports they implement as base classes (so mypy checks every signature
where it is written, and an editor finds the implementations), and the app's composition
root picks which. Every storage port has one contract
test suite (``tests/contract``) that runs over every adapter. The ports to loaded models
are in ``domain.backend_ports``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from llmserver.domain.audit import AuditEntry, AuditEvent, AuditQuery
from llmserver.domain.inference import (
    Choice,
    Completion,
    FinishReason,
    Logprobs,
)
from llmserver.domain.keys import ApiKey
from llmserver.domain.logs import DailyUsage, LogQuery, RequestLog
from llmserver.domain.quota import ReservationResult, UsageRecord
from llmserver.domain.ratelimit import RateDecision
from llmserver.domain.teams import Team
from llmserver.domain.token_rate import TokenHold, TokenReservation
from llmserver.domain.tools import from_cache_text


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float: ...


class KeyStore(Protocol):
    async def add(self, key: ApiKey) -> None:
        """Store a new key; ``ValueError`` (nothing stored) if its id or prefix is taken."""
        ...

    async def get(self, key_id: str) -> ApiKey | None: ...

    async def find_by_prefix(self, prefix: str) -> ApiKey | None: ...

    async def list(self) -> Sequence[ApiKey]: ...

    async def revoke(self, key_id: str, at: datetime) -> ApiKey | None:
        """Mark revoked (idempotent: the first revocation time is kept)."""
        ...

    async def update(self, key: ApiKey) -> ApiKey | None:
        """Store ``key``'s settings (``EDITABLE_KEY_FIELDS``) over those of the stored key
        with its id, whose hash, prefix, role, revocation and last use stay; returns the
        stored key, or ``None`` if there is none with that id."""
        ...

    async def touch(self, key_id: str, at: datetime) -> None:
        """Record last use."""
        ...


class TeamStore(Protocol):
    async def add(self, team: Team) -> None:
        """Store a new team; ``ValueError`` (nothing stored) if its id or name is taken."""
        ...

    async def get(self, team_id: str) -> Team | None: ...

    async def find_by_name(self, name: str) -> Team | None: ...

    async def list(self) -> Sequence[Team]:
        """Every team, by name."""
        ...

    async def update(self, team: Team) -> Team | None:
        """Store ``team``'s settings (``EDITABLE_TEAM_FIELDS``) over those of the stored
        team with its id; returns the stored team, ``None`` if there is none with that id,
        ``ValueError`` (nothing changed) if its new name is another team's."""
        ...


class UsageStore(Protocol):
    async def reserve(
        self, key_id: str, period: str, tokens: int, quota: int | None
    ) -> ReservationResult:
        """Atomically add ``tokens`` to reserved iff used + reserved + tokens <= quota."""
        ...

    async def settle(
        self, key_id: str, period: str, reserved: int, used: int, *, cache_hit: bool = False
    ) -> None:
        """Move a reservation to used (``used`` <= ``reserved``) and count the request."""
        ...

    async def release(self, key_id: str, period: str, reserved: int) -> None: ...

    async def get(self, key_id: str, period: str) -> UsageRecord: ...

    async def list(
        self, *, key_id: str | None = None, period: str | None = None
    ) -> Sequence[UsageRecord]: ...


class RateLimitStore(Protocol):
    async def acquire(self, bucket: str, limit: int, now_ms: int) -> RateDecision:
        """Decide and, if admitted, record one request, atomically per bucket."""
        ...


class TokenRateStore(Protocol):
    """The TPM windows (``domain.token_rate``): entries reserved, settled, released."""

    async def reserve(self, bucket: str, limit: int, tokens: int, now_ms: int) -> TokenReservation:
        """Decide (``decide_tokens``) and, if admitted, record an entry of ``tokens`` at
        ``now_ms``, atomically per bucket."""
        ...

    async def settle(self, hold: TokenHold, used: int) -> None:
        """Shrink the entry to ``used`` tokens (never grow it); nothing if it has left the
        window or was released."""
        ...

    async def release(self, hold: TokenHold) -> None:
        """Remove the entry (nothing if it has left the window)."""
        ...


class ParallelStore(Protocol):
    """Requests in flight per bucket, held from admission until the request ends."""

    async def acquire(self, bucket: str, limit: int) -> bool:
        """Take one of ``limit`` slots iff fewer than ``limit`` are held, atomically."""
        ...

    async def release(self, bucket: str) -> None:
        """Give back one slot this process took."""
        ...


class RowsRejected(Exception):
    """A store refused rows for what they hold (a value its column cannot take, a broken
    constraint): writing the same rows again fails the same way, where an outage passes.

    Background writers (request logs, written-behind usage and cache) split a rejected
    batch to set aside only the offending rows; any other exception keeps the rows queued
    for a retry."""


class RequestLogSink(Protocol):
    async def write(self, rows: Sequence[RequestLog]) -> None:
        """Write the rows in one transaction; ``RowsRejected`` if their values are refused."""
        ...


BATCH_ROWS = 1_000
"""Rows one background transaction (a purge, an eviction, a page of an export) touches at
most: a bounded batch never holds a lock or a snapshot for long."""


class RequestLogReader(Protocol):
    async def query(self, query: LogQuery) -> tuple[Sequence[RequestLog], int]:
        """Rows matching the query (newest first) and the total count."""
        ...

    def export(
        self, since: datetime, until: datetime | None = None, *, batch_rows: int = BATCH_ROWS
    ) -> AsyncIterator[RequestLog]:
        """Rows created in ``[since, until)``, oldest first, read ``batch_rows`` at a time
        (never all at once)."""
        ...


class RequestLogRetention(Protocol):
    """Keeps the request log from growing without bound, its usage figures intact."""

    async def prepare(self, now: datetime, months_ahead: int) -> Sequence[str]:
        """Make room for the rows of this month and ``months_ahead`` more: on PostgreSQL
        their monthly partitions (the names of those created); elsewhere nothing."""
        ...

    async def expire(self, before: datetime, *, batch_rows: int = BATCH_ROWS) -> int:
        """Roll the usage of rows created before ``before`` up per key, model and day, then
        remove them; returns how many went. Monthly partitions go whole, once all of their
        month is before ``before``."""
        ...

    async def daily_usage(
        self,
        since: date,
        until: date,
        *,
        key_id: str | None = None,
        model: str | None = None,
        team_id: str | None = None,
    ) -> Sequence[DailyUsage]:
        """Usage per day in ``[since, until)``, key, team and model, ordered so: the
        rolled-up rows and the live ones together, the same whether a day's rows expired
        or not."""
        ...


@dataclass(frozen=True, slots=True)
class CachedCompletion:
    key: str
    model: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    created_at: datetime
    expires_at: datetime
    hit_count: int = 0
    logprobs: Logprobs | None = None
    """The first choice's, when its request asked (the cache key says it did)."""
    more: tuple[Choice, ...] = ()
    """Choices 1 to n - 1 of a request for ``n`` > 1."""

    def completion(self) -> Completion:
        if self.finish_reason is FinishReason.TOOL_CALLS:
            text, calls = from_cache_text(self.text)
        else:
            text, calls = self.text, ()
        return Completion(
            text=text,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            finish_reason=self.finish_reason,
            tool_calls=calls,
            logprobs=self.logprobs,
            more=self.more,
        )


@dataclass(frozen=True, slots=True)
class ModelCacheStats:
    """A model's live entries in the durable cache and the hits they have had."""

    model: str
    entries: int
    hits: int


class CompletionCache(Protocol):
    """The durable, deduplicating response cache."""

    async def get(self, key: str, now: datetime) -> CachedCompletion | None:
        """A live entry (expired ones are ignored); counts the hit."""
        ...

    async def put(self, entry: CachedCompletion) -> None:
        """Store or replace the entry for ``entry.key``."""
        ...

    async def purge_expired(self, now: datetime, *, batch_rows: int = BATCH_ROWS) -> int:
        """Remove expired entries, ``batch_rows`` per transaction; returns how many."""
        ...

    async def evict(self, max_rows: int, *, batch_rows: int = BATCH_ROWS) -> int:
        """Remove the least recently hit entries (an entry never hit counts from when it
        was stored) until at most ``max_rows`` remain; returns how many went."""
        ...

    async def stats(self, now: datetime) -> Sequence[ModelCacheStats]:
        """Live entries and their hits per model, ordered by model."""
        ...

    async def purge(self, model: str | None = None, *, batch_rows: int = BATCH_ROWS) -> int:
        """Remove every entry (of ``model`` only, if given), live or not; returns how many."""
        ...


class HotCache(Protocol):
    """A fast TTL cache in front of the durable one (in-process or Redis)."""

    async def get(self, key: str) -> CachedCompletion | None: ...

    async def put(self, entry: CachedCompletion, ttl_seconds: int) -> None: ...

    async def clear(self) -> None:
        """Forget every entry (a purge of the durable cache clears this layer whole: its
        entries are short-lived copies, refilled from the durable one)."""
        ...


class Telemetry(Protocol):
    """Events of the use case that operators watch (metrics implement this).

    The gateway reports each event once: per request for lookups, refusals and tokens,
    per backend call for generations and backend errors (a shared single-flight
    inference counts once however many requests it answers).
    """

    def cache_lookup(self, layer: str, hit: bool) -> None:
        """``layer`` is ``hot`` or ``durable``."""
        ...

    def refused(self, cause: str) -> None:
        """A request refused by policy: ``rpm``, ``quota``, ``context_length``, or
        ``queue_full`` (the backend raised ``Overloaded``)."""
        ...

    def tokens(self, model: str, prompt: int, completion: int) -> None:
        """The usage of a successful request, cache hits included."""
        ...

    def spend(self, model: str, picodollars: int) -> None:
        """What a request's tokens cost, when it cost anything (see ``pricing``)."""
        ...

    def team_usage(self, team: str, prompt: int, completion: int, picodollars: int) -> None:
        """The usage and cost of a successful request of a key in the team named ``team``."""
        ...

    def first_token(self, model: str, seconds: float) -> None:
        """From admission to the first generated delta of a stream (not cache replays)."""
        ...

    def generation(self, model: str, seconds: float, completion_tokens: int) -> None:
        """A finished generation (for time per output token)."""
        ...

    def backend_error(self, model: str, kind: str) -> None:
        """A backend call failed; ``kind`` is the error code or exception class name."""
        ...


class AuditLog(Protocol):
    """The audit trail of admin actions (append-only)."""

    async def record(self, event: AuditEvent) -> AuditEntry:
        """Append the event; returns it with its id."""
        ...

    async def query(self, query: AuditQuery) -> tuple[Sequence[AuditEntry], int]:
        """Entries matching the query (newest first) and the total count."""
        ...
