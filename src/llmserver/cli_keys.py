"""``llmserver keys``: API-key administration from the command line.

The group reads ``ctx.obj.database_url``, ``ctx.obj.server_secret`` and ``ctx.obj.models``
(the parent command's settings object, a ``composition_cli.KeySettings``), so it mounts with
``cli.add_command(keys)``. Its stores come from ``composition_cli.build_key_services``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from llmserver.adapters.clock import SystemClock
from llmserver.cli_budget import BudgetChoice, budget_options
from llmserver.cli_limits import (
    EditedLimits,
    edited_limit_options,
    model_limit_option,
    model_limits_edit,
    new_limit_options,
)
from llmserver.cli_tables import details, iso, json_option, table
from llmserver.domain.audit import CLI_ACTOR, AuditAction, AuditEvent, KeyChange, key_change
from llmserver.domain.budget import usd
from llmserver.domain.edits import KEEP, Keep
from llmserver.domain.errors import GatewayError
from llmserver.domain.key_admin import KeyAdmin, KeyEdit, key_state
from llmserver.domain.key_lifetimes import parse_grace, rotation_change
from llmserver.domain.keys import ApiKey, Role
from llmserver.domain.quota import UsageRecord

if TYPE_CHECKING:
    from llmserver.app.composition_cli import KeyServices, KeySettings

T = TypeVar("T")


def _run(
    ctx: click.Context,
    use: Callable[[KeyAdmin], Awaitable[T]],
    change: Callable[[T], KeyChange | None] | None = None,
) -> T:
    return run_admin(ctx, lambda built: use(built.key_admin), change)


def run_admin(
    ctx: click.Context,
    use: Callable[[KeyServices], Awaitable[T]],
    change: Callable[[T], KeyChange | None] | None = None,
) -> T:
    """Run ``use`` on the database; a command that changes a key (or a team) names the
    change, which goes to the audit trail with ``cli`` as its actor."""
    # Imported here, where they are used: the SQL stores take most of a second to import,
    # which `llmserver --help` and every other command would pay too.
    from sqlalchemy.exc import DBAPIError

    from llmserver.app.composition_cli import build_key_services

    settings: KeySettings = ctx.obj

    async def run() -> T:
        built = build_key_services(settings)
        try:
            done = await use(built)
            recorded = None if change is None else change(done)
            if recorded is not None:
                await built.audit.record(
                    AuditEvent(
                        at=SystemClock().now(),
                        action=recorded.action,
                        actor_key_id=CLI_ACTOR,
                        actor_prefix=CLI_ACTOR,
                        target=recorded.target,
                        before=recorded.before,
                        after=recorded.after,
                    )
                )
            return done
        finally:
            await built.close()

    try:
        return asyncio.run(run())
    except GatewayError as exc:
        raise click.ClickException(exc.message) from None
    except DBAPIError as exc:
        raise click.ClickException(
            f"database error ({type(exc.orig).__name__}: {exc.orig}); "
            "if the schema is missing, run `llmserver migrate`"
        ) from None


def _key_dict(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "prefix": key.prefix,
        "name": key.name,
        "role": key.role.value,
        "state": key_state(key, SystemClock().now()).value,
        "quota_tokens": key.quota_tokens,
        "rpm_limit": key.rpm_limit,
        "tpm_limit": key.tpm_limit,
        "max_parallel": key.max_parallel,
        "allowed_models": list(key.allowed_models),
        "model_limits": {m.model_id: m.limits() for m in key.model_limits},
        "created_at": iso(key.created_at),
        "expires_at": iso(key.expires_at),
        "revoked_at": iso(key.revoked_at),
        "last_used_at": iso(key.last_used_at),
        "budget_usd": None if key.budget_nanodollars is None else usd(key.budget_nanodollars),
        "budget_window": key.budget_window.value,
        "team_id": key.team_id,
    }


def _usage_dict(record: UsageRecord) -> dict[str, Any]:
    return {
        "key_id": record.key_id,
        "period": record.period,
        "used_tokens": record.used_tokens,
        "reserved_tokens": record.reserved_tokens,
        "requests": record.requests,
        "cache_hits": record.cache_hits,
    }


def _details(key: ApiKey) -> None:
    details(_key_dict(key))


@click.group("keys")
def keys() -> None:
    """Create, list, show and revoke API keys; show token usage."""


@keys.command("create")
@click.option("--name", required=True, help="What the key is for.")
@click.option(
    "--role", type=click.Choice([r.value for r in Role]), default=Role.USER.value, show_default=True
)
@new_limit_options(defaults="role")
@click.option("--models", default="", help="Comma-separated model ids or aliases (default: all).")
@click.option(
    "--allow-unknown-models",
    is_flag=True,
    help="Accept --models names this server does not serve (models configured later).",
)
@click.option("--expires", help="Lifetime such as 30d, 12h, 90m, at most 36500d (default: never).")
@budget_options(creating=True)
@model_limit_option
@click.option("--team", help="The team (id or name) whose limits cap this key's too.")
@json_option
def create(
    name: str,
    role: str,
    limits: dict[str, int | None],
    models: str,
    allow_unknown_models: bool,
    expires: str | None,
    budget: BudgetChoice,
    model_limit: tuple[str, ...],
    team: str | None,
    as_json: bool,
) -> None:
    """Create a key and print its secret (shown only this once)."""
    key, plaintext = _run(
        click.get_current_context(),
        lambda admin: admin.create(
            name=name,
            role=role,
            **limits,
            allowed_models=models.split(","),
            expires_in=expires,
            allow_unknown_models=allow_unknown_models,
            budget=budget.of_new_key(),
            model_limits=model_limits_edit(model_limit),
            team=team,
        ),
        lambda created: key_change(AuditAction.KEY_CREATE, None, created[0]),
    )
    if as_json:
        click.echo(json.dumps({"key": plaintext, "details": _key_dict(key)}))
        return
    _details(key)
    click.echo(f"\n{plaintext}\n")
    click.echo("Store this key now: it is shown only once and cannot be recovered.", err=True)


@keys.command("list")
@json_option
@click.pass_context
def list_keys(ctx: click.Context, as_json: bool) -> None:
    """List keys (never their secrets)."""
    rows = [_key_dict(k) for k in _run(ctx, lambda admin: admin.list())]
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("no keys yet: create one with `llmserver keys create --name admin --role admin`")
        return
    table(
        rows,
        [
            "id",
            "prefix",
            "name",
            "role",
            "state",
            "quota_tokens",
            "rpm_limit",
            "tpm_limit",
            "max_parallel",
            "allowed_models",
            "expires_at",
            "last_used_at",
        ],
    )


@keys.command("show")
@click.argument("id_or_prefix")
@json_option
@click.pass_context
def show(ctx: click.Context, id_or_prefix: str, as_json: bool) -> None:
    """Show one key by id or prefix."""
    key = _run(ctx, lambda admin: admin.find(id_or_prefix))
    if as_json:
        click.echo(json.dumps(_key_dict(key)))
    else:
        _details(key)


@keys.command("update")
@click.argument("id_or_prefix")
@click.option("--name", help="A new name.")
@edited_limit_options
@budget_options(creating=False)
@model_limit_option
@click.option("--team", help="Move the key to this team (id or name).")
@click.option("--no-team", is_flag=True, help="Take the key out of its team.")
@json_option
@click.pass_context
def update(
    ctx: click.Context,
    id_or_prefix: str,
    name: str | None,
    limits: EditedLimits,
    budget: BudgetChoice,
    model_limit: tuple[str, ...],
    team: str | None,
    no_team: bool,
    as_json: bool,
) -> None:
    """Change a key's name, limits, budget or team; options left out stay as they are (so do the
    limits of models no --model-limit names). A running server sees the change within
    LLMSERVER_KEY_CACHE_TTL_S."""
    edit = KeyEdit(
        name=KEEP if name is None else name,
        **limits,
        budget_nanodollars=budget.nanodollars,
        budget_window=budget.window,
        model_limits=model_limits_edit(model_limit) if model_limit else KEEP,
        team=_team_edit(team, no_team),
    )
    _, key = _run(
        ctx,
        lambda admin: admin.update(id_or_prefix, edit),
        lambda done: key_change(AuditAction.KEY_UPDATE, *done),
    )
    if as_json:
        click.echo(json.dumps(_key_dict(key)))
    else:
        _details(key)


def _team_edit(team: str | None, no_team: bool) -> str | Keep | None:
    if team is not None and no_team:
        raise click.UsageError("--team and --no-team contradict each other: give one.")
    return None if no_team else KEEP if team is None else team


@keys.command("revoke")
@click.argument("id_or_prefix")
@click.pass_context
def revoke(ctx: click.Context, id_or_prefix: str) -> None:
    """Revoke a key by id or prefix (idempotent)."""

    async def revoke(admin: KeyAdmin) -> tuple[ApiKey, ApiKey]:
        return await admin.find(id_or_prefix), await admin.revoke(id_or_prefix)

    _, key = _run(ctx, revoke, lambda done: key_change(AuditAction.KEY_REVOKE, *done))
    click.echo(f"revoked {key.id} ({key.prefix}) at {iso(key.revoked_at)}")


@keys.command("rotate")
@click.argument("id_or_prefix")
@click.option(
    "--grace",
    default="24h",
    show_default=True,
    help="How long the old key keeps working: 0 (revoked at once) up to 30d.",
)
@json_option
@click.pass_context
def rotate(ctx: click.Context, id_or_prefix: str, grace: str, as_json: bool) -> None:
    """Replace a key by a new one with the same settings; print the new secret (shown only
    this once). The old key expires after the grace period. A running server sees the change
    within LLMSERVER_KEY_CACHE_TTL_S."""
    rotation = _run(
        ctx, lambda admin: admin.rotate(id_or_prefix, parse_grace(grace)), rotation_change
    )
    old = rotation.old_after
    if as_json:
        click.echo(
            json.dumps(
                {
                    "key": rotation.plaintext,
                    "details": _key_dict(rotation.new),
                    "replaced": _key_dict(old),
                }
            )
        )
        return
    _details(rotation.new)
    click.echo(f"\n{rotation.plaintext}\n")
    click.echo("Store this key now: it is shown only once and cannot be recovered.", err=True)
    ends = iso(old.revoked_at) if old.revoked_at else iso(old.expires_at)
    click.echo(f"old key {old.id} ({old.prefix}) stops working at {ends}", err=True)


_USAGE_LAG_NOTE = (
    "note: read from the database; a running single-process server writes its settled usage "
    "every LLMSERVER_STATE_FLUSH_MS (200 ms by default) and keeps its in-flight reservations "
    "in memory, so its last moments may not show yet (see --help)"
)


@keys.command("usage")
@click.argument("id_or_prefix", required=False)
@click.option("--period", help="YYYY-MM (default: every period).")
@json_option
@click.pass_context
def usage(ctx: click.Context, id_or_prefix: str | None, period: str | None, as_json: bool) -> None:
    """Token usage per key and month, as stored in the database.

    A server running as a single process (LLMSERVER_DEPLOYMENT=single, or auto without
    Redis) counts usage in its memory and adds what requests settled to the database every
    LLMSERVER_STATE_FLUSH_MS (200 ms by default; after a failed write it retries, backing
    off to at most 5 s) and once more at shutdown. While it runs, the usage shown here can
    miss up to one interval of its requests (more while its writes fail), and
    reserved_tokens leaves out its requests in flight. Replicas write every request
    through: their usage here is current.
    """
    rows = [_usage_dict(r) for r in _run(ctx, lambda admin: admin.usage(id_or_prefix, period))]
    if as_json:
        click.echo(json.dumps(rows))
        return
    if not rows:
        click.echo("no usage recorded")
    else:
        table(
            rows,
            ["key_id", "period", "used_tokens", "reserved_tokens", "requests", "cache_hits"],
        )
    click.echo(_USAGE_LAG_NOTE, err=True)
