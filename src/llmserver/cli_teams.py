"""``llmserver teams``: teams from the command line, straight on the database, as
``llmserver keys`` (whose settings and audit trail it shares: changes are recorded with
``cli`` as their actor). A key joins a team with ``keys create --team`` or ``keys update
--team``; teams are never deleted (``domain.team_admin``)."""

from __future__ import annotations

import json
from typing import Any

import click

from llmserver.cli_budget import BudgetChoice, budget_options
from llmserver.cli_keys import run_admin
from llmserver.cli_limits import EditedLimits, edited_limit_options, new_limit_options
from llmserver.cli_tables import details, iso, json_option, table
from llmserver.domain.audit import AuditAction, team_change
from llmserver.domain.budget import usd
from llmserver.domain.edits import KEEP
from llmserver.domain.team_admin import TeamEdit, TeamUsage
from llmserver.domain.teams import Team


def _team_dict(team: Team) -> dict[str, Any]:
    return {
        "id": team.id,
        "name": team.name,
        "quota_tokens": team.quota_tokens,
        "rpm_limit": team.rpm_limit,
        "tpm_limit": team.tpm_limit,
        "max_parallel": team.max_parallel,
        "budget_usd": None if team.budget_nanodollars is None else usd(team.budget_nanodollars),
        "budget_window": team.budget_window.value,
        "created_at": iso(team.created_at),
    }


def _usage_dict(usage: TeamUsage) -> dict[str, Any]:
    quota, budget = usage.quota, usage.budget
    shown: dict[str, Any] = {
        "period": quota.period,
        "used_tokens": quota.used_tokens,
        "reserved_tokens": quota.reserved_tokens,
        "requests": quota.requests,
    }
    if budget is not None:
        shown |= {
            "budget_period": budget.period,
            "spent_usd": usd(budget.spent),
            "remaining_usd": usd(budget.remaining),
            "budget_resets_at": iso(budget.resets_at),
        }
    return shown


def _show(team: Team, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(_team_dict(team)))
    else:
        details(_team_dict(team))


@click.group("teams")
def teams() -> None:
    """Create, list, show and change teams: limits over the sum of their keys'."""


@teams.command("create")
@click.option("--name", required=True, help="A unique name.")
@new_limit_options()
@budget_options(creating=True)
@json_option
@click.pass_context
def create(
    ctx: click.Context,
    name: str,
    limits: dict[str, int | None],
    budget: BudgetChoice,
    as_json: bool,
) -> None:
    """Create a team; its limits cap the sum over the keys that join it."""
    spend = budget.of_new_key()
    team = run_admin(
        ctx,
        lambda built: built.team_admin.create(
            name=name,
            **limits,
            budget_nanodollars=spend.nanodollars,
            budget_window=spend.window,
        ),
        lambda created: team_change(AuditAction.TEAM_CREATE, None, created),
    )
    _show(team, as_json)


@teams.command("list")
@json_option
@click.pass_context
def list_teams(ctx: click.Context, as_json: bool) -> None:
    """List teams, by name."""
    rows = [_team_dict(t) for t in run_admin(ctx, lambda built: built.team_admin.list())]
    if as_json:
        click.echo(json.dumps(rows))
    elif not rows:
        click.echo("no teams yet: create one with `llmserver teams create --name T`")
    else:
        columns = ["id", "name", "quota_tokens", "rpm_limit", "tpm_limit", "max_parallel"]
        table(rows, [*columns, "budget_usd", "budget_window"])


@teams.command("show")
@click.argument("id_or_name")
@json_option
@click.pass_context
def show(ctx: click.Context, id_or_name: str, as_json: bool) -> None:
    """Show a team by id or name, with this month's usage and its budget's window (as the
    database holds them: see `llmserver keys usage --help` on a running server's lag)."""
    team, usage = run_admin(ctx, lambda built: built.team_admin.usage(id_or_name))
    shown = {**_team_dict(team), **_usage_dict(usage)}
    if as_json:
        click.echo(json.dumps(shown))
    else:
        details(shown)


@teams.command("update")
@click.argument("id_or_name")
@click.option("--name", help="A new name.")
@edited_limit_options
@budget_options(creating=False)
@json_option
@click.pass_context
def update(
    ctx: click.Context,
    id_or_name: str,
    name: str | None,
    limits: EditedLimits,
    budget: BudgetChoice,
    as_json: bool,
) -> None:
    """Change a team's name, limits or budget; options left out stay as they are. A running
    server sees the change within LLMSERVER_KEY_CACHE_TTL_S."""
    edit = TeamEdit(
        name=KEEP if name is None else name,
        **limits,
        budget_nanodollars=budget.nanodollars,
        budget_window=budget.window,
    )
    _, team = run_admin(
        ctx,
        lambda built: built.team_admin.update(id_or_name, edit),
        lambda done: team_change(AuditAction.TEAM_UPDATE, *done),
    )
    _show(team, as_json)
