"""teams, api_keys.team_id, and the team of request_logs and usage_daily rows

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TEAM_ID_CHARS = 32
TEAM_NAME_MAX_CHARS = 64
"""``domain.teams``'s when written; a migration keeps its own copy."""

# Existing keys belong to no team (NULL). The foreign key refuses deleting a team that keys
# name (RESTRICT): a key silently leaving its team would lose the team's limits. The
# downgrade drops the column and the table: keys keep their own limits, teams' are gone.
#
# Request-log rows from before have no team (NULL, as a row of a key without one), roll-up
# rows none either ("": usage_daily's team_id joins its primary key, which cannot hold
# NULL). The downgrade sums the roll-up rows of a day, key and model over their teams
# (rows a key wrote in two teams on one day become one), so no usage is lost.
_COUNTS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cache_hits",
    "errors",
    "cost_picodollars",
)


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", sa.String(TEAM_ID_CHARS), nullable=False),
        sa.Column("name", sa.String(TEAM_NAME_MAX_CHARS), nullable=False),
        sa.Column("quota_tokens", sa.BigInteger(), nullable=True),
        sa.Column("rpm_limit", sa.Integer(), nullable=True),
        sa.Column("tpm_limit", sa.BigInteger(), nullable=True),
        sa.Column("max_parallel", sa.Integer(), nullable=True),
        sa.Column("budget_nanodollars", sa.BigInteger(), nullable=True),
        sa.Column("budget_window", sa.String(8), nullable=False, server_default="month"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams")),
        sa.UniqueConstraint("name", name=op.f("uq_teams_name")),
    )
    with _api_keys_batch() as batch:
        batch.add_column(sa.Column("team_id", sa.String(TEAM_ID_CHARS), nullable=True))
        batch.create_foreign_key(
            op.f("fk_api_keys_team_id_teams"), "teams", ["team_id"], ["id"], ondelete="RESTRICT"
        )
    op.add_column("request_logs", sa.Column("team_id", sa.String(TEAM_ID_CHARS)))
    with op.batch_alter_table("usage_daily") as batch:
        batch.add_column(
            sa.Column("team_id", sa.String(TEAM_ID_CHARS), nullable=False, server_default="")
        )
        batch.drop_constraint(op.f("pk_usage_daily"), type_="primary")
        batch.create_primary_key(op.f("pk_usage_daily"), ["day", "key_id", "team_id", "model"])


def _merge_usage_daily_over_teams() -> None:
    op.create_table(
        "usage_daily_merged",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _COUNTS),
    )
    sums = ", ".join(f"SUM({name})" for name in _COUNTS)
    names = ", ".join(("day", "key_id", "model", *_COUNTS))
    op.execute(
        f"INSERT INTO usage_daily_merged ({names}) SELECT day, key_id, model, {sums} "
        "FROM usage_daily GROUP BY day, key_id, model"
    )
    op.execute("DELETE FROM usage_daily")
    with op.batch_alter_table("usage_daily") as batch:
        batch.drop_constraint(op.f("pk_usage_daily"), type_="primary")
        batch.drop_column("team_id")
        batch.create_primary_key(op.f("pk_usage_daily"), ["day", "key_id", "model"])
    op.execute(f"INSERT INTO usage_daily ({names}) SELECT {names} FROM usage_daily_merged")
    op.drop_table("usage_daily_merged")


@contextmanager
def _api_keys_batch() -> Iterator[BatchOperations]:
    """``api_keys`` altered in batch mode. On SQLite that recreates the table, and dropping
    the old one (foreign keys on) deletes every key's model limits (ON DELETE CASCADE): they
    are kept aside and put back."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("CREATE TABLE key_model_limits_kept AS SELECT * FROM key_model_limits")
    with op.batch_alter_table("api_keys") as batch:
        yield batch
    if sqlite:
        op.execute("INSERT INTO key_model_limits SELECT * FROM key_model_limits_kept")
        op.execute("DROP TABLE key_model_limits_kept")


def downgrade() -> None:
    _merge_usage_daily_over_teams()
    op.drop_column("request_logs", "team_id")
    with _api_keys_batch() as batch:
        batch.drop_constraint(op.f("fk_api_keys_team_id_teams"), type_="foreignkey")
        batch.drop_column("team_id")
    op.drop_table("teams")
