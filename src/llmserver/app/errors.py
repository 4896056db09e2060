"""Every error leaves the server in OpenAI's shape, mapped here and only here.

``{"error": {"message", "type", "param", "code"}}`` with the precise status, plus
``Retry-After`` and rate-limit headers where the client needs them.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from litestar.types import ASGIApp
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from llmserver.domain.errors import (
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
}


def documented_errors(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the error answers a route gives, all in OpenAI's error shape."""
    return {
        status: ResponseSpec(data_container=ErrorBody, description=ERROR_MEANINGS[status])
        for status in statuses
    }


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    error_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response[ErrorBody]:
    detail = ErrorDetail(
        message=message,
        type=error_type or _TYPE_BY_STATUS.get(status, "server_error"),
        param=param,
        code=code,
    )
    return Response(ErrorBody(detail), status_code=status, headers=headers or {})


def rate_header_pairs(decision: RateDecision | None) -> list[tuple[bytes, bytes]]:
    """OpenAI's ``x-ratelimit-*-requests`` headers (absent for keys without an RPM limit), as
    the raw ASGI pairs a completion answer sends."""
    if decision is None:
        return []
    return [
        (b"x-ratelimit-limit-requests", b"%d" % decision.limit),
        (b"x-ratelimit-remaining-requests", b"%d" % decision.remaining),
        (b"x-ratelimit-reset-requests", b"%.3fs" % (decision.reset_after_ms / 1000)),
    ]


def rate_headers(decision: RateDecision | None) -> dict[str, str]:
    """``rate_header_pairs`` for a Litestar response."""
    return {name.decode(): value.decode() for name, value in rate_header_pairs(decision)}


def retry_after_header(seconds: float) -> dict[str, str]:
    # Retry-After takes whole seconds; round up so a client that obeys it is admitted.
    return {
        "retry-after": str(max(1, math.ceil(seconds))),
        "retry-after-ms": str(int(seconds * 1000)),
    }


def gateway_error_response(exc: GatewayError) -> Response[ErrorBody]:
    headers = rate_headers(exc.rate)
    error_type: str | None = None
    if isinstance(exc, RateLimited | Overloaded | Unavailable):
        headers.update(retry_after_header(exc.retry_after))
    if isinstance(exc, QuotaExceeded):
        error_type = "insufficient_quota"
        headers["x-quota-remaining-tokens"] = str(exc.remaining)
        headers["x-quota-reset"] = exc.reset_at.isoformat()
    if isinstance(exc, GenerationTimeout):
        error_type = "timeout_error"
    return error_response(
        exc.status,
        exc.message,
        code=exc.code,
        param=exc.param,
        error_type=error_type,
        headers=headers,
    )


def _note_error(request: Request[Any, Any, Any], code: str | None) -> None:
    request.scope.setdefault("state", {})["error_code"] = code


def handle_gateway_error(request: Request[Any, Any, Any], exc: GatewayError) -> Response[Any]:
    _note_error(request, exc.code)
    return gateway_error_response(exc)


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


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    param = None
    if isinstance(exc, ValidationException):
        message, param = _invalid_parameters(exc)
        code = "invalid_request"
    elif isinstance(exc, NotFoundException):
        message = f"No route for {request.method} {request.url.path}."
        code = "not_found"
    elif status == 413:
        message = "The request body is larger than the server accepts."
        code = "request_too_large"
    elif status == 408:
        message = exc.detail
        code = "request_timeout"
    elif status == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}."
        code = "method_not_allowed"
    else:
        message = exc.detail
        code = None
    _note_error(request, code)
    headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() == "allow"}
    return error_response(status, message, code=code, param=param, headers=headers)


INTERNAL_ERROR = "internal_error"
INTERNAL_ERROR_MESSAGE = "The server had an error while processing your request."
"""What a client is told of a bug (OpenAI's words); the details stay in the server's log."""


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error(
        "unhandled_error",
        path=request.url.path,
        error_type=type(exc).__name__,
        request_id=request.scope.get("state", {}).get("request_id"),
        exc_info=exc,
    )
    _note_error(request, INTERNAL_ERROR)
    return error_response(
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


def handle_store_unreachable(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A database that is down or restarting is a 503 to retry, not a server bug."""
    if isinstance(exc, DBAPIError) and not _database_unreachable(exc):
        return handle_unexpected(request, exc)
    log.warning(
        "store_unreachable",
        path=request.url.path,
        error_type=type(exc).__name__,
        request_id=request.scope.get("state", {}).get("request_id"),
    )
    _note_error(request, "service_unavailable")
    return error_response(
        503,
        "A storage backend is unreachable; retry shortly.",
        code="service_unavailable",
        headers=retry_after_header(STORE_RETRY_AFTER_S),
    )


EXCEPTION_HANDLERS: dict[Any, Any] = {
    GatewayError: handle_gateway_error,
    HTTPException: handle_http_exception,
    DBAPIError: handle_store_unreachable,
    ConnectionError: handle_store_unreachable,
    TimeoutError: handle_store_unreachable,
    Exception: handle_unexpected,
}


def exception_reply(request: Request[Any, Any, Any], exc: Exception) -> ASGIApp:
    """The answer Litestar's exception middleware would give for ``exc``: the handler of
    the nearest class in its MRO (``Exception`` catches the rest)."""
    handler = next(EXCEPTION_HANDLERS[c] for c in type(exc).__mro__ if c in EXCEPTION_HANDLERS)
    response: Response[Any] = handler(request, exc)
    return response.to_asgi_response(app=None, request=request)
