"""How a request ends: its quota and budget reservations closed exactly once, its cost
computed (at settle time, from what it is charged), its one log row written, and the
backend's failures counted."""

from __future__ import annotations

import asyncio

from llmserver.domain.budget import nanodollars_of
from llmserver.domain.errors import (
    BudgetExceeded,
    Cancelled,
    ContextLengthExceeded,
    ErrorKind,
    GatewayError,
    Overloaded,
    ParallelLimited,
    QuotaExceeded,
    RateLimited,
    TokenRateLimited,
    TooLargeForTokenRate,
)
from llmserver.domain.gateway.closing import close_all
from llmserver.domain.gateway.holds import Limits
from llmserver.domain.gateway.team_ledgers import TeamLedgers
from llmserver.domain.gateway.values import Admitted, Asked, Ledgers, Logged, LogSubmit
from llmserver.domain.inference import Completion, FinishReason
from llmserver.domain.logs import CacheStatus, RequestLog
from llmserver.domain.ports import Clock, Telemetry
from llmserver.domain.quota import settle_amount
from llmserver.domain.registry import MODEL_ID_MAX_CHARS

_HIT = CacheStatus.HIT
"""Bound once: an enum member read off its class costs a lookup on every request."""

_REFUSAL_CAUSES: tuple[tuple[type[GatewayError], str], ...] = (
    # Subclasses before their base: the first match names the cause.
    (TokenRateLimited, "tpm"),
    (TooLargeForTokenRate, "tpm"),
    (ParallelLimited, "parallel"),
    (RateLimited, "rpm"),
    (QuotaExceeded, "quota"),
    (BudgetExceeded, "budget"),
    (ContextLengthExceeded, "context_length"),
    (Overloaded, "queue_full"),
)


def _refusal_cause(exc: BaseException) -> str | None:
    return next((cause for kind, cause in _REFUSAL_CAUSES if isinstance(exc, kind)), None)


def _kind_and_code(exc: BaseException) -> tuple[ErrorKind, str]:
    """What a failed request's log row records."""
    if isinstance(exc, GatewayError):
        return exc.kind, exc.code
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        # The client went away: the task was cancelled or the stream closed.
        return Cancelled.kind, Cancelled.code
    return ErrorKind.INTERNAL, type(exc).__name__


def _unknown_model(request: Asked) -> str:
    """The model a request named, as its log row can hold it: no model id is longer than
    ``MODEL_ID_MAX_CHARS`` and PostgreSQL text cannot hold NUL (the row would be set aside).
    Only for names that resolved to no model, so never on a served request's path."""
    return request.model[:MODEL_ID_MAX_CHARS].replace("\x00", "\ufffd")


class BackendErrors:
    """Counts the backend's failures; a full queue is a refusal, not a failure.

    A class rather than ``@contextmanager``: it wraps a call on every request, and a
    generator-based context manager costs three times as much to enter and leave."""

    __slots__ = ("_model", "_telemetry")

    def __init__(self, telemetry: Telemetry, model: str) -> None:
        self._telemetry = telemetry
        self._model = model

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _: object
    ) -> None:
        if isinstance(exc, Exception) and not isinstance(exc, Overloaded):
            code = exc.code if isinstance(exc, GatewayError) else type(exc).__name__
            self._telemetry.backend_error(self._model, code)


class Outcomes:
    """Closes reservations (settle or release) and writes each request's log row."""

    def __init__(
        self,
        *,
        ledgers: Ledgers,
        limits: Limits,
        clock: Clock,
        log: LogSubmit,
        telemetry: Telemetry,
        cache_hits_count_against_quota: bool,
    ) -> None:
        self._usage = ledgers.quota
        self._budget = ledgers.budget
        self._model_quota = ledgers.model_quota
        self._teams = TeamLedgers(ledgers)
        self._limits = limits
        self._clock = clock
        self._log = log
        self._telemetry = telemetry
        self._charge_hits = cache_hits_count_against_quota
        self._closing: set[asyncio.Future[None]] = set()

    async def settle(self, admission: Admitted, completion: Completion) -> None:
        """Charge the request for ``completion``: the quota its tokens, the budget and the
        log row its cost (``admission.cost``). What the cache answered costs nothing unless
        the operator counts hits against quota: then a hit is billed as the request it
        replays."""
        reservation, admission.reservation = admission.reservation, None
        if reservation is None:
            return
        hit = admission.cache_status is _HIT
        charged = not hit or self._charge_hits
        spec = admission.spec
        cost = admission.cost = (
            # At the prices of what answered (a deployment's, a fallback's), where it says.
            (completion.prices or spec.prices).cost(
                completion.prompt_tokens, completion.completion_tokens, completion.cached_tokens
            )
            if charged
            else 0
        )
        if cost:
            self._telemetry.spend(spec.id, cost)
        tokens = settle_amount(reservation.tokens, completion.total_tokens if charged else 0)
        await close_all(
            self._usage.settle(
                reservation.key_id, reservation.period, reservation.tokens, tokens, cache_hit=hit
            ),
            self._model_quota.settle(
                reservation.model_ledger,
                reservation.period,
                reservation.tokens,
                tokens,
                cache_hit=hit,
            )
            if reservation.model_ledger
            else None,
            # Never more than it held: the budget's limit stays exact even when an upstream
            # reports more prompt tokens than were counted here.
            self._budget.settle(
                reservation.key_id,
                reservation.budget_period,
                reservation.budget,
                settle_amount(reservation.budget, nanodollars_of(cost)),
                cache_hit=hit,
            )
            if reservation.budget
            else None,
            *(() if admission.holds is None else self._limits.closes(admission.holds, tokens)),
            *(
                self._teams.settling(reservation, tokens, nanodollars_of(cost), hit)
                if reservation.team
                else ()
            ),
        )

    async def release(self, admission: Admitted) -> None:
        reservation, admission.reservation = admission.reservation, None
        if reservation is None:
            return
        await close_all(
            self._usage.release(reservation.key_id, reservation.period, reservation.tokens),
            self._model_quota.release(
                reservation.model_ledger, reservation.period, reservation.tokens
            )
            if reservation.model_ledger
            else None,
            self._budget.release(reservation.key_id, reservation.budget_period, reservation.budget)
            if reservation.budget
            else None,
            *(() if admission.holds is None else self._limits.closes(admission.holds, None)),
            self._teams.release(reservation) if reservation.team else None,
        )

    def succeed(self, call: Logged, admission: Admitted, completion: Completion) -> None:
        self._telemetry.tokens(
            admission.spec.id, completion.prompt_tokens, completion.completion_tokens
        )
        team = call.principal.team
        if team is not None:
            self._telemetry.team_usage(
                team.name, completion.prompt_tokens, completion.completion_tokens, admission.cost
            )
        self._write_log(call, None, completion, admission.cache_status, admission.cost)

    async def abort(self, call: Logged, admission: Admitted | None, exc: BaseException) -> None:
        """Close a request that raised ``exc`` and log it. A client that went away after
        its admission pays for its prompt, as for a stream cut before its first token (the
        model took it in; leaving must not make work free), and nothing for an answer it
        never received."""
        if admission is not None and isinstance(exc, asyncio.CancelledError):
            read = Completion("", admission.prompt_tokens, 0, FinishReason.STOP)
            await self.fail(call, admission, exc, completion=read)
        else:
            await self.fail(call, admission, exc)

    async def fail(
        self,
        call: Logged,
        admission: Admitted | None,
        exc: BaseException,
        *,
        completion: Completion | None = None,
    ) -> None:
        """Close the reservation (release, or settle to what ``completion`` used) and log
        the failure."""
        try:
            if admission is not None:
                # A client that went away cancels this task, and the anyio cancel scope
                # around a streamed response re-cancels it at every await: close the
                # reservation in a task of its own so it is not left reserved forever.
                closing = asyncio.ensure_future(self._close(admission, completion))
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
                await asyncio.shield(closing)
        finally:
            cause = _refusal_cause(exc)
            if cause is not None:
                self._telemetry.refused(cause)
            kind, code = _kind_and_code(exc)
            self._write_log(
                call,
                kind,
                completion,
                admission.cache_status if admission is not None else None,
                admission.cost if admission is not None else 0,
                error_code=code,
                failed=exc,
            )

    async def _close(self, admission: Admitted, completion: Completion | None) -> None:
        if completion is None:
            await self.release(admission)
        else:
            await self.settle(admission, completion)

    def _write_log(
        self,
        call: Logged,
        kind: ErrorKind | None,
        completion: Completion | None,
        cache_status: CacheStatus | None,
        cost: int,
        *,
        error_code: str | None = None,
        failed: BaseException | None = None,
    ) -> None:
        principal = call.principal
        origin = call.origin
        spec = call.spec
        served_by, attempts = None, None
        if completion is not None and completion.served_by is not None:
            served_by, attempts = completion.served_by, completion.attempts
        elif isinstance(failed, GatewayError):  # where a routed model's request failed
            served_by, attempts = failed.deployment, failed.attempts
        self._log(
            RequestLog(
                request_id=origin.request_id,
                created_at=self._clock.now(),
                route=origin.route,
                status=origin.status_of(kind),
                latency_ms=(self._clock.monotonic() - call.started) * 1000,
                key_id=principal.key.id,
                key_prefix=principal.key.prefix,
                model=spec.id if spec is not None else _unknown_model(call.request),
                prompt_tokens=completion.prompt_tokens if completion else 0,
                completion_tokens=completion.completion_tokens if completion else 0,
                cost_picodollars=cost,
                cache_status=cache_status,
                error_code=error_code,
                stream=call.stream,
                body=origin.body,
                deployment=served_by,
                attempts=attempts,
                team_id=None if principal.team is None else principal.team.id,
            )
        )
