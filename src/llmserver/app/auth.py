"""Turning the key header into a principal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Request

from llmserver.app.logging import scope_header
from llmserver.app.services import services_in, services_of
from llmserver.domain.gateway import Principal

if TYPE_CHECKING:
    from litestar.types import Scope


def presented_key(scope: Scope) -> str | None:
    """The key from ``Authorization: Bearer`` or ``X-API-Key`` (Bearer wins)."""
    authorization = scope_header(scope, b"authorization")
    if authorization:
        text = authorization.decode("latin-1")
        scheme, _, token = text.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return text.strip()
    api_key = scope_header(scope, b"x-api-key")
    return api_key.decode("latin-1").strip() if api_key else None


async def principal_of(scope: Scope) -> Principal:
    """The caller of a raw ASGI request; the access line reports its key prefix and role."""
    principal = await services_in(scope).gateway.authenticate(presented_key(scope))
    state = scope.setdefault("state", {})
    state["key_prefix"] = principal.key.prefix
    state["role"] = principal.key.role.value
    return principal


async def authenticate(request: Request[Any, Any, Any]) -> Principal:
    return await principal_of(request.scope)


async def authenticate_admin(request: Request[Any, Any, Any]) -> Principal:
    principal = await authenticate(request)
    services_of(request).gateway.require_admin(principal)
    return principal
