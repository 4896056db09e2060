"""request_logs.deployment and attempts: which routed deployment answered, in how many calls

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SERVED_BY_MAX_CHARS = 265
"""``domain.registry.SERVED_BY_MAX_CHARS`` when written: a model id (200), ``/`` and a
deployment name (64). A migration keeps its own copy: it must not change when code does."""


def upgrade() -> None:
    # Nullable, no default: rows from before routing answered from one place, and adding
    # such a column rewrites no table on PostgreSQL or SQLite.
    op.add_column("request_logs", sa.Column("deployment", sa.String(SERVED_BY_MAX_CHARS)))
    op.add_column("request_logs", sa.Column("attempts", sa.Integer()))


def downgrade() -> None:
    op.drop_column("request_logs", "attempts")
    op.drop_column("request_logs", "deployment")
