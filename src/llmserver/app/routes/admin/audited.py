"""Admin calls that change something, and the audit entry each one writes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmserver.app.auth import authenticate_admin
from llmserver.app.lane.body import read_body
from llmserver.app.lane.record import access_record
from llmserver.app.services import Services, services_of
from llmserver.domain.audit import AuditAction, AuditEvent, KeyChange, Settings

if TYPE_CHECKING:
    from litestar import Request

    from llmserver.domain.gateway.values import Principal


class AdminCall:
    """An authenticated admin request: its services, and who made it."""

    def __init__(self, request: Request[Any, Any, Any], principal: Principal) -> None:
        self.request = request
        self.principal = principal
        self.services: Services = services_of(request)

    @classmethod
    async def of(cls, request: Request[Any, Any, Any]) -> AdminCall:
        return cls(request, await authenticate_admin(request))

    async def body(self, *, optional: bool = False) -> bytes:
        settings = self.services.settings
        raw = await read_body(
            self.request.scope,
            self.request.receive,
            settings.max_body_bytes,
            settings.body_read_timeout_s,
        )
        # A POST whose every field has a default may come without a body.
        return b"{}" if optional and not raw.strip() else raw

    async def audit(
        self,
        action: AuditAction,
        target: str | None,
        before: Settings | None = None,
        after: Settings | None = None,
    ) -> None:
        """Record the action, once it is done: an entry for an action that failed would
        be false. The actor is the admin key's id and public prefix, never its secret."""
        actor = self.principal.key
        await self.services.audit.record(
            AuditEvent(
                at=self.services.clock.now(),
                action=action,
                actor_key_id=actor.id,
                actor_prefix=actor.prefix,
                target=target,
                before=before,
                after=after,
                request_id=access_record(self.request.scope).request_id or None,
            )
        )

    async def audit_key(self, change: KeyChange | None) -> None:
        if change is not None:
            await self.audit(change.action, change.target, change.before, change.after)
