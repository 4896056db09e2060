"""``llmserver logs``: the request log's upkeep and export from the command line.

Reads ``ctx.obj.settings`` (the parent command's lazily loaded settings); its stores come
from ``composition_cli.build_log_services``, straight on the database, beside a running server.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import IO, TYPE_CHECKING, TypeVar

import click
import msgspec

from llmserver.domain.logs import RequestLog, as_utc

if TYPE_CHECKING:
    from llmserver.app.composition_cli import LogServices

T = TypeVar("T")

PROGRESS_EVERY = 10_000
"""Rows exported between two progress lines on stderr."""
_FIELDS = [f.name for f in dataclasses.fields(RequestLog)]


def run_log_services(ctx: click.Context, use: Callable[[LogServices], Awaitable[T]]) -> T:
    from sqlalchemy.exc import DBAPIError

    from llmserver.app.composition_cli import build_log_services

    async def run() -> T:
        built = build_log_services(ctx.obj.settings.database_url)
        try:
            return await use(built)
        finally:
            await built.close()

    try:
        return asyncio.run(run())
    except DBAPIError as exc:
        raise click.ClickException(
            f"database error ({type(exc.orig).__name__}: {exc.orig}); "
            "if the schema is missing, run `llmserver migrate`"
        ) from None


def _instant(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """An ISO 8601 date or time, in UTC (one without a UTC offset is read as UTC)."""
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 date or time (e.g. 2026-12-01T10:00Z)"
        ) from None
    try:
        return as_utc(at)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group()
def logs() -> None:
    """The request log: partitions, retention, export, usage per day."""


@logs.command("partitions")
@click.option(
    "--ahead",
    type=click.IntRange(min=0, max=120),
    default=2,
    show_default=True,
    help="Months after this one to make partitions for.",
)
@click.pass_context
def partitions(ctx: click.Context, ahead: int) -> None:
    """Make the monthly partitions of this month and the next ones (PostgreSQL).

    A running server makes them too, every hour; rows of a month with no partition wait in
    the default partition and move into it when it is made.
    """
    made = run_log_services(ctx, lambda s: s.retention.prepare(datetime.now(UTC), ahead))
    if not ctx.obj.settings.database_url.startswith("postgresql"):
        click.echo("SQLite does not partition the request log: nothing to make")
    for name in made:
        click.echo(f"created {name}")
    if not made:
        click.echo("every partition already exists", err=True)


@logs.command("expire")
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=None,
    help="Keep this many days (default: LLMSERVER_LOG_RETENTION_DAYS).",
)
@click.pass_context
def expire(ctx: click.Context, days: int | None) -> None:
    """Remove rows older than the retention window now, their usage rolled up first."""
    from llmserver.app.maintenance import retention_cutoff

    cutoff = retention_cutoff(datetime.now(UTC), days or ctx.obj.settings.log_retention_days)
    if cutoff is None:
        raise click.UsageError("give --days or set LLMSERVER_LOG_RETENTION_DAYS")
    removed = run_log_services(ctx, lambda s: s.retention.expire(cutoff))
    click.echo(f"removed {removed} rows created before {cutoff.isoformat(timespec='seconds')}")


@logs.command("export")
@click.option(
    "--since", callback=_instant, required=True, help="First time (ISO 8601, UTC if no offset)."
)
@click.option(
    "--until", callback=_instant, default=None, help="Rows before this time (default: all)."
)
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@click.option(
    "-o",
    "--output",
    type=click.File("w", encoding="utf-8"),
    default="-",
    help="File (default: stdout).",
)
@click.pass_context
def export(
    ctx: click.Context, since: datetime, until: datetime | None, fmt: str, output: IO[str]
) -> None:
    """Write request-log rows, oldest first, as JSON lines or CSV; progress on stderr.

    Rows are read a page at a time, so an export of any size takes little memory.
    """
    if until is not None and until <= since:
        raise click.BadParameter("must be after --since", param_hint="--until")
    write = _csv_writer(output) if fmt == "csv" else _jsonl_writer(output)

    async def run(services: LogServices) -> int:
        count = 0
        async for row in services.logs.export(since, until):
            write(row)
            count += 1
            if count % PROGRESS_EVERY == 0:
                click.echo(f"exported {count} rows (up to {row.created_at.isoformat()})", err=True)
        return count

    count = run_log_services(ctx, run)
    output.flush()
    click.echo(f"exported {count} rows", err=True)


def _jsonl_writer(output: IO[str]) -> Callable[[RequestLog], None]:
    encoder = msgspec.json.Encoder()

    def write(row: RequestLog) -> None:
        output.write(encoder.encode(row).decode() + "\n")

    return write


def _csv_writer(output: IO[str]) -> Callable[[RequestLog], None]:
    writer = csv.writer(output, lineterminator="\n")
    writer.writerow(_FIELDS)

    def write(row: RequestLog) -> None:
        values = msgspec.to_builtins(row)
        writer.writerow(["" if values.get(name) is None else values[name] for name in _FIELDS])

    return write


@logs.command("usage")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), required=True, help="First day (UTC).")
@click.option(
    "--until", type=click.DateTime(["%Y-%m-%d"]), required=True, help="Day after the last."
)
@click.option("--key", "key_id", default=None, help="Only this key id.")
@click.option("--model", default=None, help="Only this model.")
@click.pass_context
def usage(
    ctx: click.Context, since: datetime, until: datetime, key_id: str | None, model: str | None
) -> None:
    """Usage per UTC day, key and model as JSON lines, expired days included (rolled up)."""
    first: date = since.date()
    end: date = until.date()
    if end <= first:
        raise click.BadParameter("must be after --since", param_hint="--until")
    from llmserver.app.routes.admin.views import DailyUsageView

    rows = run_log_services(
        ctx, lambda s: s.retention.daily_usage(first, end, key_id=key_id, model=model)
    )
    encoder = msgspec.json.Encoder()
    for row in rows:
        click.echo(encoder.encode(DailyUsageView.costed(row)).decode())
