"""api_keys.tpm_limit and api_keys.max_parallel: tokens per minute, requests in flight

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Nullable, no default: every existing key keeps having no such limit (NULL), and adding
# a nullable column rewrites no row on PostgreSQL or SQLite.


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("tpm_limit", sa.BigInteger(), nullable=True))
    op.add_column("api_keys", sa.Column("max_parallel", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("api_keys", "max_parallel")
    op.drop_column("api_keys", "tpm_limit")
