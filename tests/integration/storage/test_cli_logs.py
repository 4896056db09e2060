"""``llmserver logs``: export, partitions, expire and usage, through the real command on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner, Result

from llmserver import cli_logs
from llmserver.adapters.sql import SqlDatabase, migrate
from llmserver.cli import main
from llmserver.domain.logs import CacheStatus, RequestLog

JUNE = datetime(2024, 6, 1, tzinfo=UTC)
ROWS = 2_500  # three pages of the export's 1,000


def _rows() -> list[RequestLog]:
    return [
        RequestLog(
            request_id=f"req-{n:05d}",
            created_at=JUNE + timedelta(minutes=n),
            route="/v1/chat/completions",
            status=200 if n % 10 else 500,
            latency_ms=1.25,
            key_id="key-a",
            model="tiny",
            prompt_tokens=3,
            completion_tokens=n % 7,
            cost_picodollars=n * 10**9,
            cache_status=CacheStatus.HIT if n % 2 else None,
            body='a "quoted", multi\nline body' if n == 1 else None,
        )
        for n in range(ROWS)
    ]


@pytest.fixture
def database(empty_database_url: str) -> str:
    async def fill() -> None:
        await migrate.upgrade(empty_database_url)
        db = SqlDatabase.from_url(empty_database_url)
        try:
            await db.logs.write(_rows())
        finally:
            await db.dispose()

    asyncio.run(fill())
    return empty_database_url


def logs(database: str, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(
        main, ["logs", *args], env={"LLMSERVER_DATABASE_URL": database}, catch_exceptions=False
    )
    assert result.exit_code == code, result.output
    return result


def test_export_streams_every_row_as_json_lines_with_progress(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_logs, "PROGRESS_EVERY", 1_000)

    result = logs(database, "export", "--since", "2024-06-01", "--format", "jsonl")

    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["request_id"] for line in lines] == [f"req-{n:05d}" for n in range(ROWS)]
    assert lines[1]["cache_status"] == "HIT"
    assert lines[1]["body"] == 'a "quoted", multi\nline body'
    assert lines[0]["created_at"] == "2024-06-01T00:00:00Z"
    assert result.stderr.splitlines() == [
        "exported 1000 rows (up to 2024-06-01T16:39:00+00:00)",
        "exported 2000 rows (up to 2024-06-02T09:19:00+00:00)",
        "exported 2500 rows",
    ]


def test_export_as_csv_within_a_window(database: str) -> None:
    result = logs(
        database,
        "export",
        "--since",
        "2024-06-01T00:01:00+00:00",
        "--until",
        "2024-06-01T02:00",  # no offset: UTC
        "--format",
        "csv",
    )

    table = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["request_id"] for row in table] == [f"req-{n:05d}" for n in range(1, 120)]
    assert table[0]["body"] == 'a "quoted", multi\nline body'
    assert table[1]["body"] == table[1]["cache_status"] == ""
    assert table[0]["stream"] == "False"
    assert result.stderr == "exported 119 rows\n"


def test_export_refuses_a_bad_window(database: str) -> None:
    bad = logs(database, "export", "--since", "yesterday", code=2)
    assert "'yesterday' is not an ISO 8601 date or time" in bad.output
    before_utc = logs(database, "export", "--since", "0001-01-01T00:00+01:00", code=2)
    assert "0001-01-01T00:00:00+01:00 is outside the years 1 to 9999 in UTC." in before_utc.output
    empty = logs(database, "export", "--since", "2024-06-02", "--until", "2024-06-01", code=2)
    assert "must be after --since" in empty.output


def test_expire_rolls_up_and_usage_still_reports_the_days(database: str) -> None:
    before = logs(database, "usage", "--since", "2024-06-01", "--until", "2024-06-03").stdout

    refused = logs(database, "expire", code=2)
    assert "give --days or set LLMSERVER_LOG_RETENTION_DAYS" in refused.output
    result = logs(database, "expire", "--days", "30")

    assert result.stdout.startswith(f"removed {ROWS} rows created before ")
    assert logs(database, "export", "--since", "2024-01-01").stdout == ""
    assert (
        logs(database, "usage", "--since", "2024-06-01", "--until", "2024-06-03").stdout == before
    )
    days = [json.loads(line) for line in before.splitlines()]
    assert [(d["day"], d["requests"]) for d in days] == [("2024-06-01", 1440), ("2024-06-02", 1060)]
    assert sum(d["errors"] for d in days) == ROWS // 10
    assert sum(d["cache_hits"] for d in days) == ROWS // 2
    # Exact decimal strings of dollars: 10^-3 dollars times n, for n = 0..1439 and on.
    assert [d["cost_usd"] for d in days] == ["1036.08", "2087.67"]


def test_partitions_are_made_ahead_on_postgres_only(database: str) -> None:
    first = logs(database, "partitions", "--ahead", "4")
    again = logs(database, "partitions", "--ahead", "4")

    now = datetime.now(UTC)
    if database.startswith("postgresql"):
        # The migration made this month and two ahead; the command the two after.
        far = [
            f"request_logs_p{(now.replace(day=1) + timedelta(days=31 * n)):%Y%m}" for n in (3, 4)
        ]
        assert first.stdout.splitlines() == [f"created {name}" for name in far]
        assert again.stdout == ""
        assert again.stderr == "every partition already exists\n"
    else:
        assert first.stdout == "SQLite does not partition the request log: nothing to make\n"
