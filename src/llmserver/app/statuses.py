"""The HTTP status each kind of refusal answers with, on the OpenAI surface.

Request-log rows record the status their client was answered with, so the gateway is given
``http_status`` with each request (in its ``Origin``); the domain itself knows no HTTP.
"""

from __future__ import annotations

from llmserver.domain.errors import ErrorKind

STATUS_BY_KIND: dict[ErrorKind, int] = {
    ErrorKind.INVALID_REQUEST: 400,
    ErrorKind.UNAUTHENTICATED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.RATE_LIMITED: 429,
    ErrorKind.QUOTA_EXCEEDED: 429,
    ErrorKind.OVERLOADED: 503,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.TIMEOUT: 504,
    ErrorKind.UPSTREAM: 502,
    ErrorKind.CANCELLED: 499,  # nginx's "client closed request"
    ErrorKind.INTERNAL: 500,
}

OK = 200


def http_status(kind: ErrorKind | None) -> int:
    """A request's status: ``OK`` when answered (``kind`` is ``None``), else its kind's."""
    return OK if kind is None else STATUS_BY_KIND[kind]
