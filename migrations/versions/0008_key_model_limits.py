"""key_model_limits: a key's own RPM and TPM limits on one model

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A new table: every existing key has no per-model limit (no row). The downgrade drops the
# per-model limits with the table; the keys' own limits are untouched either way.


def upgrade() -> None:
    op.create_table(
        "key_model_limits",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("model_id", sa.String(length=200), nullable=False),
        sa.Column("rpm_limit", sa.Integer(), nullable=True),
        sa.Column("tpm_limit", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["key_id"],
            ["api_keys.id"],
            name=op.f("fk_key_model_limits_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("key_id", "model_id", name=op.f("pk_key_model_limits")),
    )


def downgrade() -> None:
    op.drop_table("key_model_limits")
