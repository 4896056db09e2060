"""request_logs.cost_picodollars and usage_daily.cost_picodollars: what requests cost

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Rows written before prices existed cost 0, as they did then. A constant default adds
# the column without rewriting the table on PostgreSQL (11+) or SQLite.
_TABLES = ("request_logs", "usage_daily")


def upgrade() -> None:
    for table in _TABLES:
        op.add_column(
            table,
            sa.Column("cost_picodollars", sa.BigInteger(), nullable=False, server_default="0"),
        )


def downgrade() -> None:
    for table in _TABLES:
        op.drop_column(table, "cost_picodollars")
