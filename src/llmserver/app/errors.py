"""Every error leaves the server in OpenAI's shape, mapped here and only here.

``{"error": {"message", "type", "param", "code"}}`` with the precise status, plus
``Retry-After`` and rate-limit headers where the client needs them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from llmserver.app.lane.record import access_record
from llmserver.app.statuses import STATUS_BY_KIND
from llmserver.domain.errors import (
    BudgetExceeded,
    GatewayError,
    GenerationTimeout,
    Overloaded,
    QuotaExceeded,
    RateLimited,
    Unavailable,
)
from llmserver.domain.ratelimit import RateDecision

log = structlog.get_logger("llmserver.errors")

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    499: "client_closed_request",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class ErrorDetail(msgspec.Struct, frozen=True):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(msgspec.Struct, frozen=True):
    error: ErrorDetail


ERROR_MEANINGS = {
    400: "Invalid request: the message names the field.",
    401: "Missing, malformed, unknown, revoked or expired API key.",
    403: "The key's role or model list does not allow this.",
    404: "No such model, key or route.",
    408: "The request body did not arrive within the body read timeout.",
    413: "The request body is larger than the server accepts.",
    429: "Rate limit (Retry-After, x-ratelimit-* headers) or monthly quota exhausted.",
    503: "A model, the queue or a store is unavailable; retry after Retry-After.",
    504: "Generation took longer than the request timeout.",
    529: "The model's queue is full (the Messages API's overloaded_error; other APIs answer 503).",
}


def documented_errors(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the error answers a route gives, all in OpenAI's error shape."""
    return {
        status: ResponseSpec(data_container=ErrorBody, description=ERROR_MEANINGS[status])
        for status in statuses
    }


@dataclass(slots=True)
class ErrorReply:
    status: int
    body: ErrorBody
    headers: dict[str, str]

    @classmethod
    def of(
        cls,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> ErrorReply:
        detail = ErrorDetail(
            message=message,
            type=error_type or _TYPE_BY_STATUS.get(status, "server_error"),
            param=param,
            code=code,
        )
        return cls(status, ErrorBody(detail), headers or {})

    def response(self) -> Response[ErrorBody]:
        return Response(self.body, status_code=self.status, headers=self.headers)


@dataclass(frozen=True, slots=True)
class Where:
    """The request an error answers, for its message and the server's log."""

    method: str
    path: str
    request_id: str | None


def rate_header_pairs(
    decision: RateDecision | None, tokens: RateDecision | None = None
) -> list[tuple[bytes, bytes]]:
    """OpenAI's ``x-ratelimit-*-requests`` headers (absent for keys without an RPM limit)
    and ``x-ratelimit-*-tokens`` headers (absent without a TPM limit), as the raw ASGI
    pairs a completion answer sends."""
    pairs = (
        []
        if decision is None
        else [
            (b"x-ratelimit-limit-requests", b"%d" % decision.limit),
            (b"x-ratelimit-remaining-requests", b"%d" % decision.remaining),
            (b"x-ratelimit-reset-requests", b"%.3fs" % (decision.reset_after_ms / 1000)),
        ]
    )
    if tokens is not None:
        pairs += (
            (b"x-ratelimit-limit-tokens", b"%d" % tokens.limit),
            (b"x-ratelimit-remaining-tokens", b"%d" % tokens.remaining),
            (b"x-ratelimit-reset-tokens", b"%.3fs" % (tokens.reset_after_ms / 1000)),
        )
    return pairs


def rate_headers(
    decision: RateDecision | None, tokens: RateDecision | None = None
) -> dict[str, str]:
    """``rate_header_pairs`` for a Litestar response."""
    return {n.decode(): v.decode() for n, v in rate_header_pairs(decision, tokens)}


def retry_after_header(seconds: float) -> dict[str, str]:
    # Retry-After takes whole seconds; round up so a client that obeys it is admitted.
    return {
        "retry-after": str(max(1, math.ceil(seconds))),
        "retry-after-ms": str(int(seconds * 1000)),
    }


def _gateway_error(exc: GatewayError) -> ErrorReply:
    headers = rate_headers(exc.rate, exc.token_rate)
    error_type: str | None = None
    if isinstance(exc, RateLimited | Overloaded | Unavailable):
        headers.update(retry_after_header(exc.retry_after))
    if isinstance(exc, QuotaExceeded):
        error_type = "insufficient_quota"
        headers["x-quota-remaining-tokens"] = str(exc.remaining)
        headers["x-quota-reset"] = exc.reset_at.isoformat()
    if isinstance(exc, BudgetExceeded):
        error_type = "budget_exceeded"
        headers["x-budget-remaining-usd"] = exc.remaining_usd
        headers["x-budget-reset"] = exc.reset_at.isoformat()
        # Read by the openai and anthropic SDKs: retrying cannot help before the reset.
        headers["x-should-retry"] = "false"
    if isinstance(exc, GenerationTimeout):
        error_type = "timeout_error"
    return ErrorReply.of(
        STATUS_BY_KIND[exc.kind],
        exc.message,
        code=exc.code,
        param=exc.param,
        error_type=error_type,
        headers=headers,
    )


def _invalid_parameters(exc: ValidationException) -> tuple[str, str | None]:
    """The message and first parameter name of Litestar's failed parameter validation, whose
    ``extra`` lists ``{"key", "message", "source"}`` per parameter."""
    problems = [p for p in exc.extra if isinstance(p, dict)] if isinstance(exc.extra, list) else []
    named = [p for p in problems if p.get("key")]
    if not named:
        return exc.detail, None
    message = "; ".join(
        f"Invalid {getattr(p.get('source'), 'value', 'request')} parameter {p['key']!r}: "
        f"{p.get('message')}"
        for p in named
    )
    return f"{message}.", str(named[0]["key"])


def _http_exception(exc: HTTPException, where: Where) -> ErrorReply:
    status = exc.status_code
    param = None
    if isinstance(exc, ValidationException):
        message, param = _invalid_parameters(exc)
        code: str | None = "invalid_request"
    elif isinstance(exc, NotFoundException):
        message = f"No route for {where.method} {where.path}."
        code = "not_found"
    elif status == 413:
        message = "The request body is larger than the server accepts."
        code = "request_too_large"
    elif status == 408:
        message = exc.detail
        code = "request_timeout"
    elif status == 405:
        message = f"Method {where.method} is not allowed on {where.path}."
        code = "method_not_allowed"
    else:
        message = exc.detail
        code = None
    headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() == "allow"}
    return ErrorReply.of(status, message, code=code, param=param, headers=headers)


INTERNAL_ERROR = "internal_error"
INTERNAL_ERROR_MESSAGE = "The server had an error while processing your request."
"""What a client is told of a bug (OpenAI's words); the details stay in the server's log."""


def _unexpected(exc: Exception, where: Where) -> ErrorReply:
    log.error(
        "unhandled_error",
        path=where.path,
        error_type=type(exc).__name__,
        request_id=where.request_id,
        exc_info=exc,
    )
    return ErrorReply.of(
        HTTP_500_INTERNAL_SERVER_ERROR,
        INTERNAL_ERROR_MESSAGE,
        code=INTERNAL_ERROR,
        error_type="server_error",
    )


STORE_RETRY_AFTER_S = 2.0

# PostgreSQL SQLSTATE classes of a server that is away: 08 connection exception,
# 57P0x operator intervention (shutting down, starting up).
_AWAY_SQLSTATES = ("08", "57P")


def _database_unreachable(exc: DBAPIError) -> bool:
    if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
        return True
    sqlstate = getattr(exc.orig, "pgcode", None) or getattr(exc.orig, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(_AWAY_SQLSTATES)


def _store_unreachable(exc: Exception, where: Where) -> ErrorReply:
    """A database that is down or restarting is a 503 to retry, not a server bug."""
    if isinstance(exc, DBAPIError) and not _database_unreachable(exc):
        return _unexpected(exc, where)
    log.warning(
        "store_unreachable",
        path=where.path,
        error_type=type(exc).__name__,
        request_id=where.request_id,
    )
    return ErrorReply.of(
        503,
        "A storage backend is unreachable; retry shortly.",
        code="service_unavailable",
        headers=retry_after_header(STORE_RETRY_AFTER_S),
    )


def error_reply(exc: Exception, where: Where) -> ErrorReply:
    """The answer to a request that raised ``exc``: the one mapping of exceptions to errors,
    for Litestar's exception handler and for the completion lane alike."""
    if isinstance(exc, GatewayError):
        return _gateway_error(exc)
    if isinstance(exc, HTTPException):
        return _http_exception(exc, where)
    if isinstance(exc, DBAPIError | ConnectionError | TimeoutError):
        return _store_unreachable(exc, where)
    return _unexpected(exc, where)


def noted_error(request: Request[Any, Any, Any], exc: Exception) -> ErrorReply:
    """``error_reply`` for a request Litestar routed, its code noted for the access line."""
    record = access_record(request.scope)
    reply = error_reply(exc, Where(request.method, request.url.path, record.request_id))
    record.error_code = reply.body.error.code
    return reply


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Litestar's exception handler for everything: ``error_reply`` as a ``Response``."""
    return noted_error(request, exc).response()
