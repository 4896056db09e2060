"""Turning the key header into a principal."""

from __future__ import annotations

from typing import Any

from litestar import Request

from llmserver.app.logging import scope_header
from llmserver.app.services import services_of
from llmserver.domain.gateway import Principal


def raw_header(request: Request[Any, Any, Any], name: bytes) -> str | None:
    """A request header as text, without ``request.headers`` (see ``scope_header``)."""
    value = scope_header(request.scope, name)
    return None if value is None else value.decode("latin-1")


def presented_key(request: Request[Any, Any, Any]) -> str | None:
    """The key from ``Authorization: Bearer`` or ``X-API-Key`` (Bearer wins)."""
    authorization = raw_header(request, b"authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return authorization.strip()
    api_key = raw_header(request, b"x-api-key")
    return api_key.strip() if api_key else None


async def authenticate(request: Request[Any, Any, Any]) -> Principal:
    principal = await services_of(request).gateway.authenticate(presented_key(request))
    state = request.scope.setdefault("state", {})
    state["key_prefix"] = principal.key.prefix
    state["role"] = principal.key.role.value
    return principal


async def authenticate_admin(request: Request[Any, Any, Any]) -> Principal:
    principal = await authenticate(request)
    services_of(request).gateway.require_admin(principal)
    return principal
