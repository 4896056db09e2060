"""``llmserver usage``: the usage report of ``GET /admin/usage`` from the command line,
straight on the database (the request log's daily figures, expired days included)."""

from __future__ import annotations

import csv
import sys
from datetime import UTC, datetime

import click
import msgspec

from llmserver.cli_logs import run_log_services
from llmserver.domain.errors import InvalidRequest
from llmserver.domain.pricing import dollars
from llmserver.domain.usage_report import COLUMN_OF, dimensions, report_range, summed

_DAY = click.DateTime(["%Y-%m-%d"])
_COUNTS = ("requests", "prompt_tokens", "completion_tokens", "total_tokens", "cache_hits", "errors")


@click.command("usage")
@click.option("--from", "first", type=_DAY, help="First day, UTC (default: this month's 1st).")
@click.option("--to", "last", type=_DAY, help="Last day, included (default: today).")
@click.option(
    "--group-by",
    default=None,
    help="Any of key, team, model, day, comma-separated (default: key, model, day).",
)
@click.option("--key", "key_id", default=None, help="Only this key id.")
@click.option("--model", default=None, help="Only this model.")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True
)
@click.pass_context
def usage(
    ctx: click.Context,
    first: datetime | None,
    last: datetime | None,
    group_by: str | None,
    key_id: str | None,
    model: str | None,
    fmt: str,
) -> None:
    """Tokens, requests, cache hits, errors and cost (exact dollars) by key, team, model
    and day."""
    try:
        since, end = report_range(
            first and first.date(), last and last.date(), datetime.now(UTC).date()
        )
        by = dimensions(group_by)
    except InvalidRequest as exc:
        hint = f"--{(exc.param or '').replace('_', '-')}"
        raise click.BadParameter(exc.message, param_hint=hint) from None
    rows = run_log_services(
        ctx, lambda s: s.retention.daily_usage(since, end, key_id=key_id, model=model)
    )
    columns = [*(COLUMN_OF[d] for d in by), *_COUNTS, "cost_usd"]
    writer = csv.writer(sys.stdout, lineterminator="\n")
    encoder = msgspec.json.Encoder()
    if fmt == "csv":
        writer.writerow(columns)
    for totals in summed(rows, by):
        values: dict[str, object] = {
            "day": totals.day,
            "key_id": totals.key_id,
            "team_id": totals.team_id,
            "model": totals.model,
            **{name: getattr(totals, name) for name in _COUNTS},
            "cost_usd": dollars(totals.cost_picodollars),
        }
        line = {c: values[c] for c in columns}
        if fmt == "csv":
            writer.writerow(["" if v is None else v for v in line.values()])
        else:
            click.echo(encoder.encode(line).decode())
