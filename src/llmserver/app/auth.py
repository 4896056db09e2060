"""Turning the key header into a principal.

Where the key is read from, one rule:

- ``Authorization: Bearer <key>`` (the scheme in any case) carries the key. When
  ``X-API-Key`` is sent as well, the Bearer key is the one used.
- ``Authorization`` with another scheme (``Basic ...``, as a proxy in front may add) is not
  an API key: it is ignored and the key is read from ``X-API-Key``.
- ``Authorization`` with no scheme at all (a bare key) is refused with a 401 that says to
  send ``Bearer <key>`` or ``X-API-Key``, unless ``X-API-Key`` is sent: then that is used.
  A bare value is ambiguous (a key pasted without its scheme, or some other credential), and
  accepting it taught clients a form other servers refuse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Request

from llmserver.app.lane.record import access_record, scope_header
from llmserver.app.services import Services, services_of
from llmserver.domain.errors import AuthReason, Unauthenticated
from llmserver.domain.gateway import Principal

if TYPE_CHECKING:
    from litestar.types import Scope


def presented_key(scope: Scope) -> str | None:
    """The key by the rule in the module docstring; ``None`` when none is sent."""
    authorization = scope_header(scope, b"authorization")
    if authorization:
        scheme, space, token = authorization.decode("latin-1").strip().partition(" ")
        if scheme.lower() == "bearer":
            if token.strip():
                return token.strip()
        elif not space and scope_header(scope, b"x-api-key") is None:
            raise Unauthenticated(AuthReason.NO_SCHEME)
    api_key = scope_header(scope, b"x-api-key")
    return api_key.decode("latin-1").strip() if api_key else None


async def principal_of(services: Services, scope: Scope) -> Principal:
    """The caller of a raw ASGI request; the access line reports its key prefix and role."""
    principal = await services.gateway.authenticate(presented_key(scope))
    record = access_record(scope)
    record.key_prefix = principal.key.prefix
    record.role = principal.key.role.value
    return principal


async def authenticate(request: Request[Any, Any, Any]) -> Principal:
    return await principal_of(services_of(request), request.scope)


async def authenticate_admin(request: Request[Any, Any, Any]) -> Principal:
    principal = await authenticate(request)
    services_of(request).gateway.require_admin(principal)
    return principal
