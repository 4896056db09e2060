"""Admin routes behind the web console: key edits and rotation, the audit trail, models
and deployments, the response cache. Every one authenticates an admin key first, and every
one that changes something writes an audit entry."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, get, patch, post
from litestar.params import Parameter
from litestar.types import ControllerRouterHandler

from llmserver.app.routes.admin import console_views as cv
from llmserver.app.routes.admin.audited import AdminCall
from llmserver.app.routes.admin.params import ADMIN_ERRORS, MAX_OFFSET, SINCE, UNTIL, utc_param
from llmserver.app.routes.admin.views import KeyView, key_view
from llmserver.app.routes.openai.serving import decode
from llmserver.app.services import Services
from llmserver.domain.audit import AuditAction, AuditQuery, key_change
from llmserver.domain.key_lifetimes import parse_grace, rotation_change

_UPDATE = msgspec.json.Decoder(cv.UpdateKey)
_ROTATE = msgspec.json.Decoder(cv.RotateKey)
_PURGE = msgspec.json.Decoder(cv.PurgeCache)


@patch(
    "/keys/{key_id:str}",
    summary="Change an API key's name, limits, models or expiry (fields left out stay)",
    responses=ADMIN_ERRORS,
)
async def update_key(request: Request[Any, Any, Any], key_id: str) -> KeyView:
    call = await AdminCall.of(request)
    body: cv.UpdateKey = decode(_UPDATE, await call.body())
    before, after = await call.services.key_admin.update(key_id, body.edit())
    await call.audit_key(key_change(AuditAction.KEY_UPDATE, before, after))
    return key_view(after, call.services.clock.now())


@post(
    "/keys/{key_id:str}/rotate",
    status_code=201,
    summary="Replace an API key by a new one with the same settings (the secret is shown once)",
    description="The old key keeps working for the grace period (default 24h, `0`: revoked "
    "at once), then expires.",
    responses=ADMIN_ERRORS,
)
async def rotate_key(request: Request[Any, Any, Any], key_id: str) -> cv.RotatedKey:
    call = await AdminCall.of(request)
    body: cv.RotateKey = decode(_ROTATE, await call.body(optional=True))
    rotation = await call.services.key_admin.rotate(key_id, parse_grace(body.grace_period))
    await call.audit_key(rotation_change(rotation))
    now = call.services.clock.now()
    return cv.RotatedKey(
        key=rotation.plaintext,
        details=key_view(rotation.new, now),
        replaced=key_view(rotation.old_after, now),
    )


@get("/audit", summary="The audit trail of admin actions, newest first", responses=ADMIN_ERRORS)
async def audit_trail(
    request: Request[Any, Any, Any],
    action: AuditAction | None = None,
    actor_key_id: Annotated[str | None, Parameter(max_length=64)] = None,
    target: Annotated[str | None, Parameter(max_length=200)] = None,
    since: Annotated[datetime | None, Parameter(description=SINCE)] = None,
    until: Annotated[datetime | None, Parameter(description=UNTIL)] = None,
    limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    offset: Annotated[int, Parameter(ge=0, le=MAX_OFFSET)] = 0,
) -> cv.AuditPage:
    call = await AdminCall.of(request)
    entries, total = await call.services.audit.query(
        AuditQuery(
            action=action,
            actor_key_id=actor_key_id,
            target=target,
            since=utc_param(since, "since"),
            until=utc_param(until, "until"),
            limit=limit,
            offset=offset,
        )
    )
    return cv.AuditPage([cv.AuditView.of(e) for e in entries], total, limit, offset)


def _model_views(services: Services) -> list[cv.ModelView]:
    statuses = {s.model_id: s for s in services.backends.statuses()}
    views = []
    for spec in services.specs:
        status = statuses.get(spec.id)
        views.append(
            cv.ModelView(
                id=spec.id,
                aliases=list(spec.aliases),
                backend=spec.backend.value,
                context_length=spec.context_length,
                ready=status is not None and status.ready,
                error=None if status is None else status.error,
                queue_depth=0 if status is None else status.queue_depth,
                details={} if status is None else dict(status.details),
                routing=spec.routing.value if spec.deployments else None,
                fallbacks=list(spec.fallbacks),
                context_fallback=spec.context_fallback,
                deployments=[
                    msgspec.convert(d, cv.DeploymentView, from_attributes=True)
                    for d in (() if status is None else status.deployments)
                ],
            )
        )
    return views


@get("/models", summary="Models, their backends, health and queue depth", responses=ADMIN_ERRORS)
async def models(request: Request[Any, Any, Any]) -> cv.ModelList:
    call = await AdminCall.of(request)
    return cv.ModelList(_model_views(call.services))


@get(
    "/cache", summary="The response cache: live entries and hits, per model", responses=ADMIN_ERRORS
)
async def cache(request: Request[Any, Any, Any]) -> cv.CacheView:
    call = await AdminCall.of(request)
    services = call.services
    per_model = await services.cache.stats(services.clock.now())
    return cv.CacheView(
        enabled=services.settings.cache_enabled,
        ttl_s=services.settings.cache_ttl_s,
        hot_layer=services.hot_cache is not None,
        entries=sum(m.entries for m in per_model),
        hits=sum(m.hits for m in per_model),
        models=[cv.ModelCacheView.of(m) for m in per_model],
    )


@post(
    "/cache/purge",
    status_code=200,
    summary="Remove cached responses: one model's, or every one",
    description="The hot layer (in process or in Redis) is cleared whole either way.",
    responses=ADMIN_ERRORS,
)
async def purge_cache(request: Request[Any, Any, Any]) -> cv.Purged:
    call = await AdminCall.of(request)
    body: cv.PurgeCache = decode(_PURGE, await call.body(optional=True))
    services = call.services
    removed = await services.cache.purge(body.model)
    if services.hot_cache is not None:
        await services.hot_cache.clear()
    await call.audit(
        AuditAction.CACHE_PURGE, body.model, after={"model": body.model, "removed": removed}
    )
    return cv.Purged(removed, body.model)


def console_handlers() -> list[ControllerRouterHandler]:
    return [update_key, rotate_key, audit_trail, models, cache, purge_cache]
