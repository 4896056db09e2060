"""The relational schema: one ORM model per table.

Datetimes use ``DateTimeUTC``: stored as UTC, always read back timezone-aware,
identically on Postgres (``timestamptz``) and SQLite (text). JSON columns are ``jsonb`` on
Postgres, ``JSON`` elsewhere.

The column type and the constraint naming convention are advanced-alchemy's, written out
here: importing advanced-alchemy loads Litestar and numpy (about a second), which every
``llmserver keys`` command paid. Only migration 0001 still imports it (see ``_compat``).

``usage`` and ``request_logs`` carry a key id without a foreign key on purpose: both are
written on the request path (a foreign-key check per row costs an index probe on the
hottest tables) and log rows must outlive any key they mention.

A column holding a value the API accepts takes its length from the domain constant that
bounds the value, so that changing one shows up as schema drift (the migrations test
compares the models with the migrated database) until a migration follows.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, registry

from llmserver.domain.audit import AUDIT_ACTION_MAX_CHARS, AUDIT_TARGET_MAX_CHARS
from llmserver.domain.key_admin import MAX_NAME_LENGTH
from llmserver.domain.logs import REQUEST_ID_MAX_CHARS
from llmserver.domain.registry import MODEL_ID_MAX_CHARS, SERVED_BY_MAX_CHARS
from llmserver.domain.teams import TEAM_ID_CHARS, TEAM_NAME_MAX_CHARS

# advanced-alchemy's own ``JsonB`` fails to attach to a table under SQLAlchemy 2.1
# (it calls the removed ``util.portable_instancemethod``), hence this equivalent.
JsonB = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY, Postgres should use a bigint.
_BIG_ID = BigInteger().with_variant(Integer, "sqlite")


class DateTimeUTC(TypeDecorator[datetime]):
    """advanced-alchemy's ``DateTimeUTC``: a naive datetime is refused, an aware one is
    stored as UTC, and one read back without a zone (SQLite) is taken as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not value.tzinfo:
            raise TypeError("tzinfo is required")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


# advanced-alchemy's convention: the migrations name every constraint and index by it.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Our own registry, not a shared global metadata, so Alembic sees exactly these
    tables. A ``Mapped[datetime]`` column given no type still gets ``DateTimeUTC``, as
    advanced-alchemy's registry gave it."""

    registry = registry(
        metadata=MetaData(naming_convention=NAMING_CONVENTION),
        type_annotation_map={datetime: DateTimeUTC},
    )


class RoleModel(Base):
    __tablename__ = "roles"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    description: Mapped[str] = mapped_column(String(500))
    default_rpm: Mapped[int | None] = mapped_column(Integer)
    default_quota_tokens: Mapped[int | None] = mapped_column(BigInteger)


class ApiKeyModel(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(32), ForeignKey("roles.name"))
    quota_tokens: Mapped[int | None] = mapped_column(BigInteger)
    rpm_limit: Mapped[int | None] = mapped_column(Integer)
    tpm_limit: Mapped[int | None] = mapped_column(BigInteger)
    max_parallel: Mapped[int | None] = mapped_column(Integer)
    allowed_models: Mapped[list[str]] = mapped_column(JsonB)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTimeUTC(timezone=True))
    budget_nanodollars: Mapped[int | None] = mapped_column(BigInteger)
    budget_window: Mapped[str] = mapped_column(String(8), server_default="month")
    team_id: Mapped[str | None] = mapped_column(
        String(TEAM_ID_CHARS), ForeignKey("teams.id", ondelete="RESTRICT")
    )


class TeamModel(Base):
    """A team (``domain.teams``): limits over the sum of its keys'. A key's ``team_id``
    refuses deleting a team that keys name (RESTRICT); no API deletes one."""

    __tablename__ = "teams"

    id: Mapped[str] = mapped_column(String(TEAM_ID_CHARS), primary_key=True)
    name: Mapped[str] = mapped_column(String(TEAM_NAME_MAX_CHARS), unique=True)
    quota_tokens: Mapped[int | None] = mapped_column(BigInteger)
    rpm_limit: Mapped[int | None] = mapped_column(Integer)
    tpm_limit: Mapped[int | None] = mapped_column(BigInteger)
    max_parallel: Mapped[int | None] = mapped_column(Integer)
    budget_nanodollars: Mapped[int | None] = mapped_column(BigInteger)
    budget_window: Mapped[str] = mapped_column(String(8), server_default="month")
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))


class KeyModelLimitModel(Base):
    """A key's own limits on one model (``ModelLimit``): rows, not a JSON column, so a
    model's overrides can be queried and a limit is typed like the key's own."""

    __tablename__ = "key_model_limits"
    key_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    model_id: Mapped[str] = mapped_column(String(MODEL_ID_MAX_CHARS), primary_key=True)
    rpm_limit: Mapped[int | None] = mapped_column(Integer)
    tpm_limit: Mapped[int | None] = mapped_column(BigInteger)
    quota_tokens: Mapped[int | None] = mapped_column(BigInteger)


class UsageModel(Base):
    __tablename__ = "usage"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    reserved_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    used_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_hits: Mapped[int] = mapped_column(BigInteger, default=0)


class BudgetSpendModel(Base):
    """Each key's spend per budget window (``domain.budget``), in nanodollars: the durable
    record the budget ledger is seeded from and written behind to, as ``usage`` is for the
    quota. A Core table under the ORM: each column's ``key`` is the name ``SqlUsageStore``
    and the background writes use for any ledger's column, its name says what it holds."""

    __table__ = Table(
        "budget_spend",
        Base.metadata,
        Column("key_id", String(64), primary_key=True),
        Column("period", String(10), primary_key=True),
        Column("reserved_nanodollars", BigInteger, key="reserved_tokens", nullable=False),
        Column("spent_nanodollars", BigInteger, key="used_tokens", nullable=False),
        Column("requests", BigInteger, nullable=False),
        Column("cache_hits", BigInteger, nullable=False),
    )


class KeyModelUsageModel(Base):
    """Each key's tokens per model and month under its quota on that model
    (``ModelLimit.quota_tokens``): ``usage`` for a (key, model) pair, written behind the
    same way. ``SqlUsageStore`` reads the ledger id ``quota.model_ledger_id`` gives into
    ``key_id`` and ``model_id``. No foreign key, as for ``usage``: written off the request
    path, and a month's record may outlive the key's limit on the model."""

    __table__ = Table(
        "key_model_usage",
        Base.metadata,
        Column("key_id", String(64), primary_key=True),
        Column("model_id", String(MODEL_ID_MAX_CHARS), primary_key=True),
        Column("period", String(7), primary_key=True),
        Column("reserved_tokens", BigInteger, nullable=False),
        Column("used_tokens", BigInteger, nullable=False),
        Column("requests", BigInteger, nullable=False),
        Column("cache_hits", BigInteger, nullable=False),
    )


class RequestLogModel(Base):
    """On PostgreSQL a table partitioned by month of ``created_at`` (``sql.partitions``),
    whose primary key must hold the partition key; SQLite keeps ``id`` alone as its key,
    which is what makes it auto-increment there (Alembic does not compare primary keys)."""

    __tablename__ = "request_logs"

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(REQUEST_ID_MAX_CHARS), index=True)
    key_id: Mapped[str | None] = mapped_column(String(64), index=True)
    key_prefix: Mapped[str | None] = mapped_column(String(32))
    model: Mapped[str | None] = mapped_column(String(MODEL_ID_MAX_CHARS))
    route: Mapped[str] = mapped_column(String(200))
    status: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    cost_picodollars: Mapped[int] = mapped_column(BigInteger, server_default="0")
    """10^-12 dollars (``domain.pricing``): an exact integer, no rounding."""
    cache_status: Mapped[str | None] = mapped_column(String(8))
    error_code: Mapped[str | None] = mapped_column(String(64))
    stream: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(
        DateTimeUTC(timezone=True), primary_key=True, index=True
    )
    body: Mapped[str | None] = mapped_column(Text)
    deployment: Mapped[str | None] = mapped_column(String(SERVED_BY_MAX_CHARS))
    attempts: Mapped[int | None] = mapped_column(Integer)
    team_id: Mapped[str | None] = mapped_column(String(TEAM_ID_CHARS))


class UsageDailyModel(Base):
    """Request-log usage rolled up per UTC day, key, team and model, written as retention
    removes the rows it counts (so live rows and these never count a request twice).

    A row without a key, team or model holds ``""`` there (a primary key cannot hold NULL);
    rows rolled up before teams existed have no team (``""``)."""

    __tablename__ = "usage_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    team_id: Mapped[str] = mapped_column(String(TEAM_ID_CHARS), primary_key=True, server_default="")
    model: Mapped[str] = mapped_column(String(MODEL_ID_MAX_CHARS), primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    cache_hits: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    cost_picodollars: Mapped[int] = mapped_column(BigInteger, server_default="0")


class CompletionCacheModel(Base):
    __tablename__ = "completion_cache"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    model: Mapped[str] = mapped_column(String(MODEL_ID_MAX_CHARS))
    response: Mapped[dict[str, Any]] = mapped_column(JsonB)
    """``{"text": ..., "finish_reason": ...}``: the answer as it is replayed."""
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)
    hit_count: Mapped[int] = mapped_column(Integer, default=0)
    last_hit_at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)
    """The latest hit, to within a write-behind flush; ``created_at`` until the first. The
    size cap (``LLMSERVER_CACHE_MAX_ROWS``) evicts the entries with the oldest."""


class AuditLogModel(Base):
    """Append-only: the app inserts and reads, never updates or deletes. The actor is a key
    id without a foreign key, so that an entry outlives the key it names."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(_BIG_ID, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTimeUTC(timezone=True), index=True)
    action: Mapped[str] = mapped_column(String(AUDIT_ACTION_MAX_CHARS), index=True)
    actor_key_id: Mapped[str] = mapped_column(String(64), index=True)
    actor_prefix: Mapped[str] = mapped_column(String(32))
    target: Mapped[str | None] = mapped_column(String(AUDIT_TARGET_MAX_CHARS), index=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(JsonB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JsonB)
    request_id: Mapped[str | None] = mapped_column(String(REQUEST_ID_MAX_CHARS))


metadata = Base.metadata
