"""What several admin routes share: their documented errors and their query parameters."""

from __future__ import annotations

from datetime import datetime

from llmserver.app.errors import documented_errors
from llmserver.domain.errors import InvalidRequest
from llmserver.domain.logs import as_utc

ADMIN_ERRORS = documented_errors(400, 401, 403, 404)

MAX_OFFSET = 1_000_000_000
"""Databases take 64-bit offsets at most; nobody pages a billion rows deep."""

_NAIVE_IS_UTC = "A time without a UTC offset is read as UTC."
SINCE = f"Rows logged at or after this time (ISO 8601). {_NAIVE_IS_UTC}"
UNTIL = f"Rows logged before this time (ISO 8601). {_NAIVE_IS_UTC}"


def utc_param(at: datetime | None, param: str) -> datetime | None:
    if at is None:
        return None
    try:
        return as_utc(at)
    except ValueError as exc:
        raise InvalidRequest(f"{param} {exc}", param=param) from None
