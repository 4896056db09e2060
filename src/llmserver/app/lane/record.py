"""What one request's access line reports, kept in one slotted record under one scope key.

The access-log middleware puts the record in the ASGI ``scope["state"]`` (the namespace
ASGI gives an application's per-request data) before anything else runs; authentication,
the completion handlers and the error handlers fill it in; the middleware writes the line
from it when the answer is sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from litestar.types import Scope

ACCESS_KEY = "llmserver.access"


class AccessRecord:
    __slots__ = (
        "cache",
        "completion_tokens",
        "error_code",
        "headers",
        "key_prefix",
        "model",
        "prompt_tokens",
        "request_id",
        "role",
    )

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.key_prefix: str | None = None
        self.role: str | None = None
        self.model: str | None = None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.cache: str | None = None
        self.error_code: str | None = None
        self.headers: dict[bytes, bytes] | None = None
        """The request's headers by name, built by the first ``scope_header``."""


def open_record(scope: Scope, request_id: str = "") -> AccessRecord:
    """A new request's record, put where ``access_record`` finds it."""
    record = AccessRecord(request_id)
    scope.setdefault("state", {})[ACCESS_KEY] = record
    return record


def access_record(scope: Scope) -> AccessRecord:
    """The request's record; a scope the access-log middleware did not see gets a blank
    one (an app built without it, as some tests do), so callers never check."""
    try:  # free when it does not raise, as on every request the middleware opened
        record: AccessRecord = scope["state"][ACCESS_KEY]
    except KeyError:
        return open_record(scope, "")
    return record


def wants_cache(scope: Scope) -> bool:
    """Whether the client lets the response cache answer (no ``Cache-Control: no-cache``
    or ``no-store``)."""
    directives = (scope_header(scope, b"cache-control") or b"").lower()
    return b"no-cache" not in directives and b"no-store" not in directives


def scope_header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a request header (``name`` in lower case). The first lookup
    makes the raw ASGI pairs one dictionary, kept on the request's record: a request looks
    up four to six headers (its id, key, body length, cache directives), and a scan of the
    pairs for each cost more, the more headers a client sends (the openai SDK sends a
    dozen)."""
    record = access_record(scope)
    headers = record.headers
    if headers is None:
        # Reversed: of a header sent twice, the first value is the one kept.
        headers = record.headers = dict(reversed(list(scope["headers"])))
    return headers.get(name)
