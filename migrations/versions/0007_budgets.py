"""api_keys.budget_nanodollars and budget_window, and budget_spend: spend budgets per key

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing keys have no budget (NULL); the window's constant default adds the column
    # without rewriting the table.
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("budget_nanodollars", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column("budget_window", sa.String(8), nullable=False, server_default="month")
        )
    op.create_table(
        "budget_spend",
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("period", sa.String(10), nullable=False),
        sa.Column("reserved_nanodollars", sa.BigInteger(), nullable=False),
        sa.Column("spent_nanodollars", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("cache_hits", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "period", name=op.f("pk_budget_spend")),
    )


def downgrade() -> None:
    op.drop_table("budget_spend")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("budget_window")
        batch.drop_column("budget_nanodollars")
