"""initial schema: roles, api_keys, usage, request_logs, completion_cache

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from advanced_alchemy.types import DateTimeUTC
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _utc() -> DateTimeUTC:
    return DateTimeUTC(timezone=True)


def upgrade() -> None:
    roles = op.create_table(
        "roles",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("default_rpm", sa.Integer(), nullable=True),
        sa.Column("default_quota_tokens", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_roles")),
    )
    # The roles as they were at this revision, written out: a migration must build the same
    # rows whenever it runs, so it never reads ``domain.keys.DEFAULT_ROLES``. A change to
    # those needs a migration of its own.
    op.bulk_insert(
        roles,
        [
            {
                "name": "admin",
                "description": "Full access, including the admin API.",
                "default_rpm": None,
                "default_quota_tokens": None,
            },
            {
                "name": "user",
                "description": "Inference API only.",
                "default_rpm": 60,
                "default_quota_tokens": 1_000_000,
            },
            {
                "name": "playground",
                "description": "Inference API for the browser playground, tight limits.",
                "default_rpm": 10,
                "default_quota_tokens": 100_000,
            },
        ],
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("quota_tokens", sa.BigInteger(), nullable=True),
        sa.Column("rpm_limit", sa.Integer(), nullable=True),
        sa.Column("allowed_models", JSON, nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=True),
        sa.Column("revoked_at", _utc(), nullable=True),
        sa.Column("last_used_at", _utc(), nullable=True),
        sa.ForeignKeyConstraint(["role"], ["roles.name"], name=op.f("fk_api_keys_role_roles")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    op.create_table(
        "usage",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("reserved_tokens", sa.BigInteger(), nullable=False),
        sa.Column("used_tokens", sa.BigInteger(), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("cache_hits", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "period", name=op.f("pk_usage")),
    )
    op.create_table(
        "request_logs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=True),
        sa.Column("key_prefix", sa.String(length=32), nullable=True),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cache_status", sa.String(length=8), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_request_logs")),
    )
    op.create_index(op.f("ix_request_logs_created_at"), "request_logs", ["created_at"])
    op.create_index(op.f("ix_request_logs_key_id"), "request_logs", ["key_id"])
    op.create_index(op.f("ix_request_logs_request_id"), "request_logs", ["request_id"])
    op.create_table(
        "completion_cache",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("response", JSON, nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Column("hit_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_completion_cache")),
    )
    op.create_index(op.f("ix_completion_cache_expires_at"), "completion_cache", ["expires_at"])


def downgrade() -> None:
    op.drop_table("completion_cache")
    op.drop_table("request_logs")
    op.drop_table("usage")
    op.drop_table("api_keys")
    op.drop_table("roles")
