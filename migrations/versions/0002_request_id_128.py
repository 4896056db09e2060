"""request_logs.request_id holds the 128 characters an X-Request-ID may have

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# PostgreSQL widens a varchar without rewriting the table or its index; SQLite (which
# never enforced the length) copies the table in batch mode.


def upgrade() -> None:
    with op.batch_alter_table("request_logs") as batch:
        batch.alter_column(
            "request_id",
            existing_type=sa.String(length=64),
            type_=sa.String(length=128),
            existing_nullable=False,
        )


def downgrade() -> None:
    # Longer ids are cut to fit rather than failing the downgrade: the rows stay.
    op.execute(
        "UPDATE request_logs SET request_id = substr(request_id, 1, 64) "
        "WHERE length(request_id) > 64"
    )
    with op.batch_alter_table("request_logs") as batch:
        batch.alter_column(
            "request_id",
            existing_type=sa.String(length=128),
            type_=sa.String(length=64),
            existing_nullable=False,
        )
