"""``GET /admin/usage``: the usage report (tokens, requests, cache hits, errors and cost
by key, team, model and day over a date range, as JSON or CSV), and, asked with none of the
report's parameters, the per-key monthly quota ledger it answered before 0.3.0."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, timedelta
from typing import Annotated, Any, Literal, cast

import msgspec
from litestar import Request, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from llmserver.app.auth import authenticate_admin
from llmserver.app.routes.admin import views as v
from llmserver.app.routes.admin.params import ADMIN_ERRORS
from llmserver.app.services import services_of
from llmserver.domain.pricing import dollars
from llmserver.domain.quota import period_of
from llmserver.domain.usage_report import (
    COLUMN_OF,
    Dimension,
    UsageTotals,
    dimensions,
    report_range,
    summed,
)

CSV = "text/csv"
_COUNTS = ("requests", "prompt_tokens", "completion_tokens", "total_tokens", "cache_hits", "errors")


class UsageRow(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A group's totals; the dimensions it is not grouped by are left out."""

    day: date | None = None
    key_id: str | None = None
    team_id: str | None = None
    model: str | None = None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cache_hits: int
    errors: int
    cost_usd: str
    """Dollars, an exact decimal string."""

    @classmethod
    def of(cls, totals: UsageTotals) -> UsageRow:
        return cls(
            day=totals.day,
            key_id=totals.key_id,
            team_id=totals.team_id,
            model=totals.model,
            requests=totals.requests,
            prompt_tokens=totals.prompt_tokens,
            completion_tokens=totals.completion_tokens,
            total_tokens=totals.total_tokens,
            cache_hits=totals.cache_hits,
            errors=totals.errors,
            cost_usd=dollars(totals.cost_picodollars),
        )


class UsageReport(msgspec.Struct, frozen=True, kw_only=True, rename={"first": "from"}):
    first: date
    to: date
    group_by: list[Dimension]
    data: list[UsageRow]
    object: Literal["usage.report"] = "usage.report"
    """Not ``list``: the route also answers a ``UsageList``, and the OpenAPI document tells
    the two apart by it."""


def _csv(report: UsageReport) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = [*(COLUMN_OF[d] for d in report.group_by), *_COUNTS, "cost_usd"]
    writer.writerow(columns)
    for row in report.data:
        values = msgspec.to_builtins(row)
        writer.writerow(["" if values.get(c) is None else values[c] for c in columns])
    return out.getvalue().encode()


def _wants_csv(request: Request[Any, Any, Any], fmt: str | None) -> bool:
    if fmt is not None:
        return fmt == "csv"
    accept = request.headers.get("accept", "")
    return CSV in accept and "application/json" not in accept


@get(
    "/usage",
    summary="Usage report by key, team, model and day (JSON or CSV); without its parameters, "
    "token usage per key and month (the 0.2 answer)",
    responses={
        200: ResponseSpec(
            data_container=cast("Any", UsageReport | v.UsageList),  # `object` tells them apart
            description="The report (or, asked "
            "with none of from, to, group_by, format, model and no Accept: text/csv, a UsageList).",
        ),
        **ADMIN_ERRORS,
    },
)
async def usage(
    request: Request[Any, Any, Any],
    key_id: str | None = None,
    model: str | None = None,
    period: Annotated[
        str | None,
        Parameter(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM (the monthly form)"),
    ] = None,
    first: Annotated[
        date | None, Parameter(query="from", description="First day (UTC); default: the 1st.")
    ] = None,
    to: Annotated[date | None, Parameter(description="Last day, included; default: today.")] = None,
    group_by: Annotated[
        str | None,
        Parameter(
            max_length=40,
            description="Any of key, team, model, day, comma-separated (default: key, model, day).",
        ),
    ] = None,
    fmt: Annotated[Literal["json", "csv"] | None, Parameter(query="format")] = None,
    team: Annotated[
        str | None, Parameter(max_length=64, description="Only this team's (id or name).")
    ] = None,
) -> Response[Any]:
    await authenticate_admin(request)
    services = services_of(request)
    now = services.clock.now()
    wants_csv = _wants_csv(request, fmt)
    report_asked = (first, to, group_by, fmt, model, team) != (None,) * 6 or wants_csv
    if not report_asked:
        chosen = period or (None if key_id else period_of(now))
        records = await services.key_admin.usage(key_id, chosen)
        return Response(v.UsageList([v.UsageView.of(r) for r in records]))
    since, end = report_range(first, to, now.astimezone(UTC).date())
    if key_id is not None:
        key_id = (await services.key_admin.find(key_id)).id
    team_id = None if team is None else (await services.team_admin.find(team)).id
    rows = await services.retention.daily_usage(
        since, end, key_id=key_id, model=model, team_id=team_id
    )
    by = dimensions(group_by)
    report = UsageReport(
        first=since,
        to=end - timedelta(days=1),
        group_by=list(by),
        data=[UsageRow.of(t) for t in summed(rows, by)],
    )
    if wants_csv:
        return Response(
            _csv(report),
            media_type=CSV,
            headers={
                "content-disposition": (
                    f'attachment; filename="usage-{report.first}-{report.to}.csv"'
                )
            },
        )
    return Response(report)
