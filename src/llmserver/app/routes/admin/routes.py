"""Admin handlers. Every one authenticates an admin key first."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, delete, get, post
from litestar.params import Parameter

from llmserver.app import paths
from llmserver.app.auth import authenticate_admin
from llmserver.app.lane.body import read_body
from llmserver.app.routes.admin import views as v
from llmserver.app.routes.admin.audited import AdminCall
from llmserver.app.routes.admin.console import console_handlers
from llmserver.app.routes.admin.params import ADMIN_ERRORS, MAX_OFFSET, SINCE, UNTIL, utc_param
from llmserver.app.routes.admin.teams import team_handlers
from llmserver.app.routes.admin.usage_report import usage
from llmserver.app.routes.openai.serving import decode
from llmserver.app.services import Services, services_of
from llmserver.domain.audit import AuditAction, key_change
from llmserver.domain.budget import KeyBudget
from llmserver.domain.budget_status import parse_budget_usd
from llmserver.domain.errors import InvalidRequest
from llmserver.domain.key_admin import KeyState, key_matches
from llmserver.domain.keys import DEFAULT_ROLES, Role
from llmserver.domain.logs import REQUEST_ID_MAX_CHARS, CacheStatus, LogQuery

_CREATE_DECODER = msgspec.json.Decoder(v.CreateKey)


async def _refuse_nul(request: Request[Any, Any, Any]) -> None:
    """PostgreSQL text cannot hold U+0000, and its driver fails a query that carries one (a
    500) where the answer could only be "nothing found": name the parameter instead."""
    for name, value in (*request.path_params.items(), *request.query_params.multi_items()):
        if isinstance(value, str) and "\x00" in value:
            raise InvalidRequest(f"{name} must not contain a NUL character.", param=name)


async def _admin(request: Request[Any, Any, Any]) -> Services:
    await authenticate_admin(request)
    return services_of(request)


@post(
    "/keys",
    status_code=201,
    summary="Create an API key (the secret is shown once)",
    responses=ADMIN_ERRORS,
)
async def create_key(request: Request[Any, Any, Any]) -> v.CreatedKey:
    call = await AdminCall.of(request)
    services = call.services
    settings = services.settings
    raw = await read_body(
        request.scope, request.receive, settings.max_body_bytes, settings.body_read_timeout_s
    )
    body: v.CreateKey = decode(_CREATE_DECODER, raw)
    key, plaintext = await services.key_admin.create(
        name=body.name,
        role=body.role,
        quota_tokens=body.quota_tokens,
        rpm_limit=body.rpm_limit,
        tpm_limit=body.tpm_limit,
        max_parallel=body.max_parallel,
        allowed_models=tuple(body.allowed_models),
        expires_in=body.expires_in,
        allow_unknown_models=body.allow_unknown_models,
        budget=KeyBudget(
            None if body.budget_usd is None else parse_budget_usd(body.budget_usd),
            body.budget_window,
        ),
        model_limits=v.model_limits_edit(body.model_limits),
        team=body.team,
    )
    await call.audit_key(key_change(AuditAction.KEY_CREATE, None, key))
    return v.CreatedKey(key=plaintext, details=v.key_view(key, services.clock.now()))


@get("/keys", summary="List API keys (never their secrets), with filters", responses=ADMIN_ERRORS)
async def list_keys(
    request: Request[Any, Any, Any],
    q: Annotated[
        str | None,
        Parameter(max_length=200, description="Text in the key's name, prefix or id (any case)."),
    ] = None,
    # "state" is a name Litestar keeps for itself: the query parameter is mapped to it.
    in_state: Annotated[KeyState | None, Parameter(query="state")] = None,
    role: Role | None = None,
) -> v.KeyList:
    services = await _admin(request)
    now = services.clock.now()
    return v.KeyList(
        [
            v.key_view(k, now)
            for k in await services.key_admin.list()
            if key_matches(k, now, text=q, state=in_state, role=role)
        ]
    )


@get("/keys/{key_id:str}", summary="Show one API key", responses=ADMIN_ERRORS)
async def show_key(request: Request[Any, Any, Any], key_id: str) -> v.KeyView:
    services = await _admin(request)
    return v.key_view(await services.key_admin.find(key_id), services.clock.now())


@delete("/keys/{key_id:str}", status_code=200, summary="Revoke an API key", responses=ADMIN_ERRORS)
async def revoke_key(request: Request[Any, Any, Any], key_id: str) -> v.KeyView:
    call = await AdminCall.of(request)
    before = await call.services.key_admin.find(key_id)
    after = await call.services.key_admin.revoke(key_id)
    await call.audit_key(key_change(AuditAction.KEY_REVOKE, before, after))
    return v.key_view(after, call.services.clock.now())


@get(
    "/budgets",
    summary="Each budgeted key's spend in its budget's current window",
    responses=ADMIN_ERRORS,
)
async def budgets(request: Request[Any, Any, Any], key_id: str | None = None) -> v.BudgetList:
    services = await _admin(request)
    return v.BudgetList([v.BudgetView.of(s) for s in await services.key_admin.budgets(key_id)])


@get(
    "/model-quotas",
    summary="Each key's quota on each model, with this month's tokens used and held",
    responses=ADMIN_ERRORS,
)
async def model_quotas(
    request: Request[Any, Any, Any], key_id: str | None = None
) -> v.ModelQuotaList:
    services = await _admin(request)
    statuses = await services.key_admin.model_quotas(key_id)
    return v.ModelQuotaList([v.ModelQuotaView.of(s) for s in statuses])


MAX_DAILY_SPAN_DAYS = 366


@get(
    "/usage/daily",
    summary="Usage per UTC day, key and model, from the request log (expired days included)",
    responses=ADMIN_ERRORS,
)
async def daily_usage(
    request: Request[Any, Any, Any],
    since: Annotated[
        date | None,
        Parameter(description="First day (YYYY-MM-DD, UTC); default: this month's first."),
    ] = None,
    until: Annotated[
        date | None, Parameter(description="Day after the last (YYYY-MM-DD); default: tomorrow.")
    ] = None,
    key_id: str | None = None,
    model: str | None = None,
) -> v.DailyUsageList:
    services = await _admin(request)
    today = services.clock.now().astimezone(UTC).date()
    since = since or today.replace(day=1)
    end = until or today + timedelta(days=1)
    if not since < end:
        raise InvalidRequest(f"until ({end}) must be after since ({since}).", param="until")
    if (end - since).days > MAX_DAILY_SPAN_DAYS:
        raise InvalidRequest(
            f"since to until spans {(end - since).days} days; ask for "
            f"{MAX_DAILY_SPAN_DAYS} at most per request.",
            param="until",
        )
    rows = await services.retention.daily_usage(since, end, key_id=key_id, model=model)
    return v.DailyUsageList([v.DailyUsageView.costed(r) for r in rows])


@get("/logs", summary="Request logs, newest first, with filters", responses=ADMIN_ERRORS)
async def logs(
    request: Request[Any, Any, Any],
    key_id: str | None = None,
    model: str | None = None,
    status: Annotated[int | None, Parameter(ge=100, le=599)] = None,
    since: Annotated[datetime | None, Parameter(description=SINCE)] = None,
    until: Annotated[datetime | None, Parameter(description=UNTIL)] = None,
    request_id: Annotated[str | None, Parameter(max_length=REQUEST_ID_MAX_CHARS)] = None,
    cache_status: CacheStatus | None = None,
    limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    offset: Annotated[int, Parameter(ge=0, le=MAX_OFFSET)] = 0,
) -> v.LogPage:
    services = await _admin(request)
    rows, total = await services.logs.query(
        LogQuery(
            key_id=key_id,
            model=model,
            status=status,
            since=utc_param(since, "since"),
            until=utc_param(until, "until"),
            request_id=request_id,
            cache_status=cache_status,
            limit=limit,
            offset=offset,
        )
    )
    return v.LogPage([v.LogView.costed(r) for r in rows], total, limit, offset)


@get("/roles", summary="Roles and their default limits", responses=ADMIN_ERRORS)
async def roles(request: Request[Any, Any, Any]) -> v.RoleList:
    await _admin(request)
    return v.RoleList([v.RoleView.of(spec) for spec in DEFAULT_ROLES])


def admin_router() -> Router:
    return Router(
        path=paths.ADMIN,
        route_handlers=[
            create_key,
            list_keys,
            show_key,
            revoke_key,
            budgets,
            model_quotas,
            usage,
            daily_usage,
            logs,
            roles,
            *console_handlers(),
            *team_handlers(),
        ],
        tags=["Admin"],
        security=[{"BearerToken": []}],
        before_request=_refuse_nul,
    )
