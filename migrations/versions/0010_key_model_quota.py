"""key_model_limits.quota_tokens and key_model_usage: a key's monthly token quota per model

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Existing per-model limits get no quota (NULL); the ledger starts empty. The downgrade
# drops the per-model quotas and what was counted under them; the RPM and TPM limits on
# a model, and the keys' own quotas and usage, are untouched either way.


def upgrade() -> None:
    with op.batch_alter_table("key_model_limits") as batch:
        batch.add_column(sa.Column("quota_tokens", sa.BigInteger(), nullable=True))
    op.create_table(
        "key_model_usage",
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("model_id", sa.String(200), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("reserved_tokens", sa.BigInteger(), nullable=False),
        sa.Column("used_tokens", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("cache_hits", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "model_id", "period", name=op.f("pk_key_model_usage")),
    )


def downgrade() -> None:
    op.drop_table("key_model_usage")
    with op.batch_alter_table("key_model_limits") as batch:
        batch.drop_column("quota_tokens")
