"""data lifecycle: request_logs by month (PostgreSQL), usage_daily, completion_cache.last_hit_at

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out rather than imported from ``sql.partitions``: a migration must do the same
# whenever it runs. The app creates later months under the same names.
MONTHS_AHEAD = 2
_INDEXED = ("created_at", "key_id", "request_id")


def _first_of(year: int, month: int) -> date:
    return date(year + (month - 1) // 12, (month - 1) % 12 + 1, 1)


def _partition_ddl(month: date) -> str:
    end = _first_of(month.year, month.month + 1)
    return (
        f"CREATE TABLE request_logs_p{month:%Y%m} PARTITION OF request_logs "
        f"FOR VALUES FROM ('{month.isoformat()} 00:00:00+00') TO ('{end.isoformat()} 00:00:00+00')"
    )


def _partition_request_logs() -> None:
    """Rebuild request_logs as a table partitioned by month, its rows and id sequence kept:
    a partition for this month, the ``MONTHS_AHEAD`` next, and each earlier month that has
    rows, and a DEFAULT partition that takes any row no month holds (no insert ever fails
    for want of a partition). The rows are copied in this transaction: on a large table,
    time it and plan the downtime of its writes."""
    bind = op.get_bind()
    op.execute("ALTER TABLE request_logs RENAME TO request_logs_unpartitioned")
    op.execute("ALTER TABLE request_logs_unpartitioned DROP CONSTRAINT pk_request_logs")
    for column in _INDEXED:
        op.execute(f"DROP INDEX ix_request_logs_{column}")
    op.execute(
        "CREATE TABLE request_logs (LIKE request_logs_unpartitioned INCLUDING DEFAULTS) "
        "PARTITION BY RANGE (created_at)"
    )
    # A partitioned table's primary key must hold its partition key.
    op.execute(
        "ALTER TABLE request_logs ADD CONSTRAINT pk_request_logs PRIMARY KEY (id, created_at)"
    )
    op.execute("ALTER SEQUENCE request_logs_id_seq OWNED BY request_logs.id")
    for column in _INDEXED:
        op.execute(f"CREATE INDEX ix_request_logs_{column} ON request_logs ({column})")
    op.execute("CREATE TABLE request_logs_default PARTITION OF request_logs DEFAULT")
    held = bind.execute(
        sa.text(
            "SELECT DISTINCT date_trunc('month', created_at AT TIME ZONE 'UTC')::date "
            "FROM request_logs_unpartitioned"
        )
    ).scalars()
    today = datetime.now(UTC).date()
    ahead = [_first_of(today.year, today.month + n) for n in range(MONTHS_AHEAD + 1)]
    # Months past those ahead keep their rows in the default partition, which the app
    # moves into a month's partition when it makes it.
    for month in sorted({m for m in held if m <= ahead[-1]} | set(ahead)):
        op.execute(_partition_ddl(month))
    op.execute("INSERT INTO request_logs SELECT * FROM request_logs_unpartitioned")
    op.execute("DROP TABLE request_logs_unpartitioned")


def _unpartition_request_logs() -> None:
    op.execute("CREATE TABLE request_logs_plain (LIKE request_logs INCLUDING DEFAULTS)")
    op.execute("INSERT INTO request_logs_plain SELECT * FROM request_logs")
    # Before the partitioned table goes: a sequence owned by its column would go with it.
    op.execute("ALTER SEQUENCE request_logs_id_seq OWNED BY request_logs_plain.id")
    op.execute("DROP TABLE request_logs")  # and every partition
    op.execute("ALTER TABLE request_logs_plain RENAME TO request_logs")
    op.execute("ALTER TABLE request_logs ADD CONSTRAINT pk_request_logs PRIMARY KEY (id)")
    for column in _INDEXED:
        op.execute(f"CREATE INDEX ix_request_logs_{column} ON request_logs ({column})")


def upgrade() -> None:
    op.create_table(
        "usage_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_hits", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "key_id", "model", name=op.f("pk_usage_daily")),
    )
    with op.batch_alter_table("completion_cache") as batch:
        batch.add_column(sa.Column("last_hit_at", sa.DateTime(timezone=True), nullable=True))
    # An entry's last hit is not known: its creation stands in, as for one never hit.
    op.execute("UPDATE completion_cache SET last_hit_at = created_at")
    with op.batch_alter_table("completion_cache") as batch:
        batch.alter_column("last_hit_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch.create_index(op.f("ix_completion_cache_last_hit_at"), ["last_hit_at"])
    if op.get_bind().dialect.name == "postgresql":
        _partition_request_logs()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _unpartition_request_logs()
    with op.batch_alter_table("completion_cache") as batch:
        batch.drop_index(op.f("ix_completion_cache_last_hit_at"))
        batch.drop_column("last_hit_at")
    op.drop_table("usage_daily")
