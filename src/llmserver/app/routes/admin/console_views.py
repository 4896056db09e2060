"""Admin API bodies of the console's routes: key edits and rotation, the audit trail,
models and the cache. A key's secret appears only in ``RotatedKey``, once."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

from llmserver.app.routes.admin.views import (
    BudgetUsd,
    KeyView,
    ModelLimitsBody,
    RecordView,
    TeamRef,
    budget_edit,
    model_limits_edit,
)
from llmserver.domain.budget import BudgetWindow
from llmserver.domain.edits import KEEP
from llmserver.domain.key_admin import MAX_NAME_LENGTH, KeyEdit
from llmserver.domain.key_limits import MAX_PARALLEL, MAX_QUOTA_TOKENS, MAX_RPM, MAX_TPM
from llmserver.domain.registry import MODEL_ID_MAX_CHARS


class UpdateKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fields left out stay as they are; ``null`` means no limit (or no expiry)."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_LENGTH)] | UnsetType = UNSET
    quota_tokens: Annotated[int, msgspec.Meta(ge=0, le=MAX_QUOTA_TOKENS)] | UnsetType | None = UNSET
    rpm_limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_RPM)] | UnsetType | None = UNSET
    tpm_limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_TPM)] | UnsetType | None = UNSET
    max_parallel: Annotated[int, msgspec.Meta(ge=1, le=MAX_PARALLEL)] | UnsetType | None = UNSET
    allowed_models: list[str] | UnsetType = UNSET
    """Model ids or aliases, stored as ids; empty: every model."""
    allow_unknown_models: bool = False
    expires_at: datetime | UnsetType | None = UNSET
    """An ISO 8601 time with its UTC offset; ``null``: never."""
    budget_usd: BudgetUsd | UnsetType | None = UNSET
    """Dollars per ``budget_window`` (a decimal string or a number); ``null``: no budget."""
    budget_window: BudgetWindow | UnsetType = UNSET
    model_limits: ModelLimitsBody | UnsetType = UNSET
    """Per model: its new limits, or ``null`` to remove them; models left out keep theirs."""
    team: TeamRef | UnsetType | None = UNSET
    """The team (id or name) to move the key to; ``null``: out of its team."""

    def edit(self) -> KeyEdit:
        # UNSET is msgspec's "left out", KEEP the domain's.
        return KeyEdit(
            name=KEEP if isinstance(self.name, UnsetType) else self.name,
            quota_tokens=KEEP if isinstance(self.quota_tokens, UnsetType) else self.quota_tokens,
            rpm_limit=KEEP if isinstance(self.rpm_limit, UnsetType) else self.rpm_limit,
            tpm_limit=KEEP if isinstance(self.tpm_limit, UnsetType) else self.tpm_limit,
            max_parallel=KEEP if isinstance(self.max_parallel, UnsetType) else self.max_parallel,
            allowed_models=(
                KEEP if isinstance(self.allowed_models, UnsetType) else self.allowed_models
            ),
            expires_at=KEEP if isinstance(self.expires_at, UnsetType) else self.expires_at,
            budget_nanodollars=budget_edit(self.budget_usd),
            budget_window=KEEP if isinstance(self.budget_window, UnsetType) else self.budget_window,
            model_limits=(
                KEEP
                if isinstance(self.model_limits, UnsetType)
                else model_limits_edit(self.model_limits)
            ),
            team=KEEP if isinstance(self.team, UnsetType) else self.team,
            allow_unknown_models=self.allow_unknown_models,
        )


class RotateKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    grace_period: Annotated[str, msgspec.Meta(max_length=40)] = "24h"
    """How long the old key keeps working: ``0`` (revoked at once) up to ``30d``."""


class RotatedKey(msgspec.Struct, frozen=True):
    key: str
    """The new secret API key. Shown only in this response; store it now."""
    details: KeyView
    """The new key."""
    replaced: KeyView
    """The old key, now expiring at the end of the grace period (or revoked)."""


# Shows an AuditEntry.
class AuditView(RecordView, frozen=True):
    id: int
    at: datetime
    action: str
    actor_key_id: str
    actor_prefix: str
    target: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    request_id: str | None


class AuditPage(msgspec.Struct, frozen=True):
    data: list[AuditView]
    total: int
    limit: int
    offset: int
    object: str = "list"


# Shows a DeploymentStatus.
class DeploymentView(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    backend: str
    state: str
    healthy: bool
    in_flight: int
    max_parallel: int | None
    requests: int
    failures: int
    retries: int
    latency_s: float | None


class ModelView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    aliases: list[str]
    backend: str
    context_length: int
    ready: bool
    error: str | None
    queue_depth: int
    details: dict[str, str]
    routing: str | None
    """A model with several deployments: its strategy, fallbacks and deployments."""
    fallbacks: list[str]
    context_fallback: str | None
    deployments: list[DeploymentView]


class ModelList(msgspec.Struct, frozen=True):
    data: list[ModelView]
    object: str = "list"


# Shows a ModelCacheStats.
class ModelCacheView(RecordView, frozen=True):
    model: str
    entries: int
    hits: int


class CacheView(msgspec.Struct, frozen=True, kw_only=True):
    enabled: bool
    ttl_s: int
    hot_layer: bool
    entries: int
    """Live entries in the durable cache."""
    hits: int
    """Hits those entries have had (to within a write-behind flush)."""
    models: list[ModelCacheView]


class PurgeCache(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=MODEL_ID_MAX_CHARS)] | None = None
    """Purge this model's entries only; left out: every entry."""


class Purged(msgspec.Struct, frozen=True):
    removed: int
    model: str | None
