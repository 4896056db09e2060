"""How ``llmserver keys`` and ``llmserver teams`` print: a record's fields one per line,
rows as an aligned table, times to the second, ``--json`` for machines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import click

from llmserver.cli_limits import model_limits_text


def iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat(timespec="seconds")


_UNLIMITED_WHEN_NONE = frozenset({"quota_tokens", "rpm_limit", "tpm_limit", "max_parallel"})


def _text(field: str, value: Any) -> str:
    if value is None:
        return "unlimited" if field in _UNLIMITED_WHEN_NONE else "-"
    if isinstance(value, list):
        return ",".join(value) or "all"
    if isinstance(value, dict):  # model limits, as typed
        return model_limits_text(value)
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    cells = [[_text(c, row[c]) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    for line in [[c.upper() for c in columns], *cells]:
        click.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


def details(record: Mapping[str, Any]) -> None:
    for field, value in record.items():
        click.echo(f"{field + ':':<16}{_text(field, value)}")


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
