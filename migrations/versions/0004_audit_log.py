"""audit_log: every admin action, who made it, and what it changed

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_INDEXED = ("at", "action", "actor_key_id", "target")


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("actor_key_id", sa.String(length=64), nullable=False),
        sa.Column("actor_prefix", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=200), nullable=True),
        sa.Column("before", _JSON, nullable=True),
        sa.Column("after", _JSON, nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    for column in _INDEXED:
        op.create_index(op.f(f"ix_audit_log_{column}"), "audit_log", [column])


def downgrade() -> None:
    for column in _INDEXED:
        op.drop_index(op.f(f"ix_audit_log_{column}"), table_name="audit_log")
    op.drop_table("audit_log")
