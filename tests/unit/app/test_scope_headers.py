"""Request headers read from the ASGI scope: ``scope_header`` and the record keeping them."""

from __future__ import annotations

from typing import Any

from llmserver.app.lane.record import access_record, open_record, scope_header


def _scope(*pairs: tuple[bytes, bytes]) -> Any:  # an ASGI HTTP scope, as far as read
    return {"type": "http", "headers": list(pairs)}


def test_the_first_value_of_a_repeated_header_is_the_one_read() -> None:
    scope = _scope((b"authorization", b"Bearer first"), (b"authorization", b"Bearer second"))
    assert scope_header(scope, b"authorization") == b"Bearer first"
    assert scope_header(scope, b"x-api-key") is None


def test_headers_are_read_once_onto_the_request_s_record() -> None:
    scope = _scope((b"cache-control", b"no-cache"))
    record = open_record(scope, "req-1")
    assert scope_header(scope, b"cache-control") == b"no-cache"
    assert record.headers == {b"cache-control": b"no-cache"}
    assert access_record(scope) is record
    # Later lookups read the record's copy.
    scope["headers"].append((b"x-request-id", b"late"))
    assert scope_header(scope, b"x-request-id") is None


def test_a_scope_without_a_record_gets_one() -> None:
    scope = _scope((b"content-length", b"12"))
    assert scope_header(scope, b"content-length") == b"12"
    assert access_record(scope).headers == {b"content-length": b"12"}
