"""``/admin/teams``: create, list, show and edit teams (a team's limits cap the sum of its
keys'). Teams are never deleted (``domain.team_admin``); a key joins or leaves one with
``POST /admin/keys`` (``team``) or ``PATCH /admin/keys/{key_id}``. Every change writes an
audit entry (``team.create``, ``team.update``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, get, patch, post
from litestar.params import Parameter
from litestar.types import ControllerRouterHandler
from msgspec import UNSET, UnsetType

from llmserver.app.routes.admin.audited import AdminCall
from llmserver.app.routes.admin.params import ADMIN_ERRORS
from llmserver.app.routes.admin.views import (
    BudgetUsd,
    BudgetView,
    RecordView,
    UsageView,
    budget_edit,
)
from llmserver.app.routes.openai.serving import decode
from llmserver.domain.audit import AuditAction, team_change
from llmserver.domain.budget import BudgetWindow, usd
from llmserver.domain.budget_status import parse_budget_usd
from llmserver.domain.edits import KEEP
from llmserver.domain.key_limits import MAX_PARALLEL, MAX_QUOTA_TOKENS, MAX_RPM, MAX_TPM
from llmserver.domain.team_admin import TeamEdit, TeamUsage
from llmserver.domain.teams import TEAM_NAME_MAX_CHARS, Team

TeamName = Annotated[str, msgspec.Meta(min_length=1, max_length=TEAM_NAME_MAX_CHARS)]
Quota = Annotated[int, msgspec.Meta(ge=0, le=MAX_QUOTA_TOKENS)]
Rpm = Annotated[int, msgspec.Meta(ge=1, le=MAX_RPM)]
Tpm = Annotated[int, msgspec.Meta(ge=1, le=MAX_TPM)]
Parallel = Annotated[int, msgspec.Meta(ge=1, le=MAX_PARALLEL)]


# Shows a Team.
class TeamView(RecordView, frozen=True):
    id: str
    name: str
    quota_tokens: int | None
    """Tokens per calendar month (UTC) over all the team's keys; ``null``: no quota."""
    rpm_limit: int | None
    tpm_limit: int | None
    max_parallel: int | None
    budget_window: str
    created_at: datetime
    budget_usd: str | None = None
    """The spend limit per ``budget_window`` over all its keys; ``null``: none."""


def team_view(team: Team) -> TeamView:
    budget = team.budget_nanodollars
    return msgspec.structs.replace(
        TeamView.of(team), budget_usd=None if budget is None else usd(budget)
    )


class TeamList(msgspec.Struct, frozen=True):
    data: list[TeamView]
    object: Literal["list"] = "list"
    """A literal, so the OpenAPI document tells it from a ``TeamUsageList`` (``GET /teams``
    answers either)."""


class TeamDetail(msgspec.Struct, frozen=True):
    team: TeamView
    usage: UsageView
    """This month's tokens and requests over the team's keys (``key_id``: the team's ledger
    id, ``team:<id>``)."""
    budget: BudgetView | None
    """The budget's current window, for a team with a budget."""


def team_detail(team: Team, usage: TeamUsage) -> TeamDetail:
    budget = None if usage.budget is None else BudgetView.of(usage.budget)
    return TeamDetail(team_view(team), UsageView.of(usage.quota), budget)


class TeamUsageList(msgspec.Struct, frozen=True):
    """Every team as ``GET /teams/{team}`` shows it."""

    data: list[TeamDetail]
    object: Literal["teams.with_usage"] = "teams.with_usage"
    """Not ``list``: the OpenAPI document tells it from a ``TeamList`` by it."""


class CreateTeam(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: TeamName
    """Unique among teams."""
    quota_tokens: Quota | None = None
    rpm_limit: Rpm | None = None
    tpm_limit: Tpm | None = None
    max_parallel: Parallel | None = None
    budget_usd: BudgetUsd | None = None
    """A spend limit in dollars per ``budget_window`` over the team's keys; ``null``: none."""
    budget_window: BudgetWindow = BudgetWindow.MONTH


class UpdateTeam(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fields left out stay as they are; ``null`` means no limit (or no budget)."""

    name: TeamName | UnsetType = UNSET
    quota_tokens: Quota | UnsetType | None = UNSET
    rpm_limit: Rpm | UnsetType | None = UNSET
    tpm_limit: Tpm | UnsetType | None = UNSET
    max_parallel: Parallel | UnsetType | None = UNSET
    budget_usd: BudgetUsd | UnsetType | None = UNSET
    budget_window: BudgetWindow | UnsetType = UNSET

    def edit(self) -> TeamEdit:
        # UNSET is msgspec's "left out", KEEP the domain's.
        values: dict[str, Any] = {
            name: KEEP if isinstance(value := getattr(self, name), UnsetType) else value
            for name in self.__struct_fields__
            if name != "budget_usd"
        }
        return TeamEdit(budget_nanodollars=budget_edit(self.budget_usd), **values)


_CREATE = msgspec.json.Decoder(CreateTeam)
_UPDATE = msgspec.json.Decoder(UpdateTeam)


@post("/teams", status_code=201, summary="Create a team", responses=ADMIN_ERRORS)
async def create_team(request: Request[Any, Any, Any]) -> TeamView:
    call = await AdminCall.of(request)
    body: CreateTeam = decode(_CREATE, await call.body())
    team = await call.services.team_admin.create(
        name=body.name,
        quota_tokens=body.quota_tokens,
        rpm_limit=body.rpm_limit,
        tpm_limit=body.tpm_limit,
        max_parallel=body.max_parallel,
        budget_nanodollars=None if body.budget_usd is None else parse_budget_usd(body.budget_usd),
        budget_window=body.budget_window,
    )
    await call.audit_key(team_change(AuditAction.TEAM_CREATE, None, team))
    return team_view(team)


@get(
    "/teams",
    summary="List teams, by name; with_usage=true: each with this month's usage and its "
    "budget's window",
    description="With `with_usage=true` every team comes as `GET /admin/teams/{team}` shows it "
    "(a `TeamUsageList`, `object` `teams.with_usage`), read in one call whatever the number of "
    "teams; without it, the teams alone (a `TeamList`).",
    responses=ADMIN_ERRORS,
)
async def list_teams(
    request: Request[Any, Any, Any],
    with_usage: Annotated[
        bool,
        Parameter(description="Add each team's usage this month and its budget's current window."),
    ] = False,
) -> TeamList | TeamUsageList:
    call = await AdminCall.of(request)
    admin = call.services.team_admin
    if with_usage:
        return TeamUsageList([team_detail(t, usage) for t, usage in await admin.usages()])
    return TeamList([team_view(t) for t in await admin.list()])


@get(
    "/teams/{team:str}",
    summary="Show a team (by id or name) with this month's usage and its budget's window",
    responses=ADMIN_ERRORS,
)
async def show_team(request: Request[Any, Any, Any], team: str) -> TeamDetail:
    call = await AdminCall.of(request)
    return team_detail(*await call.services.team_admin.usage(team))


@patch(
    "/teams/{team:str}",
    summary="Change a team's name, limits or budget (fields left out stay)",
    description="Servers see the change from their next request (another replica's within "
    "`LLMSERVER_KEY_CACHE_TTL_S`).",
    responses=ADMIN_ERRORS,
)
async def update_team(request: Request[Any, Any, Any], team: str) -> TeamView:
    call = await AdminCall.of(request)
    body: UpdateTeam = decode(_UPDATE, await call.body())
    before, after = await call.services.team_admin.update(team, body.edit())
    await call.audit_key(team_change(AuditAction.TEAM_UPDATE, before, after))
    return team_view(after)


def team_handlers() -> list[ControllerRouterHandler]:
    return [create_team, list_teams, show_team, update_team]
