"""Admin API bodies. A key's secret appears only in ``CreatedKey``, once."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal, Self

import msgspec

from llmserver.domain.budget import BudgetWindow, usd
from llmserver.domain.budget_status import BudgetStatus, parse_budget_usd
from llmserver.domain.edits import KEEP, Keep
from llmserver.domain.key_admin import MAX_NAME_LENGTH, KeyState, key_state
from llmserver.domain.key_limits import MAX_PARALLEL, MAX_QUOTA_TOKENS, MAX_RPM, MAX_TPM
from llmserver.domain.key_models import ModelLimitsEdit
from llmserver.domain.keys import ApiKey, Role
from llmserver.domain.logs import DailyUsage, RequestLog
from llmserver.domain.pricing import dollars
from llmserver.domain.registry import MODEL_ID_MAX_CHARS
from llmserver.domain.teams import TEAM_NAME_MAX_CHARS

BudgetUsd = Annotated[str, msgspec.Meta(max_length=32)] | int | float
"""Dollars as a decimal string or a JSON number (read as the decimal it says)."""


def budget_edit(value: BudgetUsd | msgspec.UnsetType | None) -> int | Keep | None:
    """An edit body's ``budget_usd`` in nanodollars: left out, ``KEEP``; ``null``, no
    budget; else the amount (``InvalidRequest`` saying what is wrong with it)."""
    if isinstance(value, msgspec.UnsetType):
        return KEEP
    return None if value is None else parse_budget_usd(value)


TeamRef = Annotated[str, msgspec.Meta(min_length=1, max_length=TEAM_NAME_MAX_CHARS)]
"""A team's id or name (an id, 32 characters, is shorter than the longest name)."""


class RecordView(msgspec.Struct, frozen=True):
    """A body that shows a domain record: ``of(record)`` reads its fields off the record by
    name. Values keep their type unless the view's differs (a tuple becomes a list); an enum
    stays one, and encodes as its value, so the JSON is what the record's values would give.
    A view names its record in a comment: a docstring would be its OpenAPI description."""

    @classmethod
    def of(cls, record: object) -> Self:
        return msgspec.convert(record, cls, from_attributes=True)


# Shows a ModelLimit: a key's own limits on one model.
class ModelLimitView(RecordView, frozen=True):
    model_id: str
    rpm_limit: int | None
    tpm_limit: int | None
    quota_tokens: int | None
    """Tokens per calendar month (UTC) on this model."""


class ModelLimitBody(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A key's own limits on one model, on top of the key's: ``null`` (or left out) is no
    limit of that kind on the model."""

    rpm_limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_RPM)] | None = None
    tpm_limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_TPM)] | None = None
    quota_tokens: Annotated[int, msgspec.Meta(ge=0, le=MAX_QUOTA_TOKENS)] | None = None
    """Tokens per calendar month (UTC) on this model, reserved before each request as the
    key's own quota is."""


ModelLimitsBody = dict[
    Annotated[str, msgspec.Meta(min_length=1, max_length=MODEL_ID_MAX_CHARS)],
    ModelLimitBody | None,
]
"""Per model id or alias: its limits, or ``null`` to remove them (in an update)."""


def model_limits_edit(body: ModelLimitsBody) -> ModelLimitsEdit:
    return {
        model: None if limits is None else msgspec.structs.asdict(limits)
        for model, limits in body.items()
    }


# Shows an ApiKey, without its hash.
class KeyView(RecordView, frozen=True):
    id: str
    name: str
    prefix: str
    role: str
    quota_tokens: int | None
    rpm_limit: int | None
    tpm_limit: int | None
    max_parallel: int | None
    allowed_models: list[str]
    model_limits: list[ModelLimitView]
    """The key's own limits per model, on top of its limits above, by model id."""
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None
    budget_window: str
    state: KeyState = KeyState.ACTIVE
    """active, revoked or expired, at the time of the answer."""
    budget_usd: str | None = None
    """The spend limit per ``budget_window`` (day, week or month, UTC), exact dollars;
    ``null``: none."""
    team_id: str | None = None
    """The team whose limits cap this key's too; ``null``: none."""


def key_view(key: ApiKey, now: datetime) -> KeyView:
    budget = key.budget_nanodollars
    return msgspec.structs.replace(
        KeyView.of(key),
        state=key_state(key, now),
        budget_usd=None if budget is None else usd(budget),
    )


class CreatedKey(msgspec.Struct, frozen=True):
    key: str
    """The secret API key. Shown only in this response; store it now."""
    details: KeyView


class KeyList(msgspec.Struct, frozen=True):
    data: list[KeyView]
    object: str = "list"


class CreateKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_LENGTH)]
    role: Role = Role.USER
    quota_tokens: Annotated[int, msgspec.Meta(ge=0, le=MAX_QUOTA_TOKENS)] | None = None
    rpm_limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_RPM)] | None = None
    tpm_limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_TPM)] | None = None
    """Tokens per minute (prompt + max_tokens reserved, settled to the tokens used)."""
    max_parallel: Annotated[int, msgspec.Meta(ge=1, le=MAX_PARALLEL)] | None = None
    """Requests in flight at once."""
    allowed_models: list[str] = []
    """Model ids or aliases, stored as ids; empty: every model."""
    allow_unknown_models: bool = False
    """Accept names in ``allowed_models`` that this server does not serve (yet)."""
    expires_in: str | None = None
    """A duration such as ``30d``, ``12h`` or ``90m``, at most ``36500d``."""
    budget_usd: BudgetUsd | None = None
    """A spend limit in dollars per ``budget_window``: a decimal string (``"25.50"``) or a
    number, at most 9 decimal places and 1,000,000; ``null``: none."""
    budget_window: BudgetWindow = BudgetWindow.MONTH
    model_limits: ModelLimitsBody = {}
    """Per model: RPM, TPM and monthly quota of the key on that model, on top of its own."""
    team: TeamRef | None = None
    """The team (id or name) whose limits cap this key's too; ``null``: none."""


# Shows a BudgetStatus: a key's spend in its budget's current window.
class BudgetView(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str
    window: BudgetWindow
    period: str
    """The window: ``2026-12-01`` (day), ``2026-W49`` (ISO week), ``2026-12`` (month)."""
    budget_usd: str
    spent_usd: str
    reserved_usd: str
    """Held by requests in flight."""
    remaining_usd: str
    resets_at: datetime

    @classmethod
    def of(cls, status: BudgetStatus) -> BudgetView:
        return cls(
            key_id=status.key_id,
            window=status.window,
            period=status.period,
            budget_usd=usd(status.budget),
            spent_usd=usd(status.spent),
            reserved_usd=usd(status.reserved),
            remaining_usd=usd(status.remaining),
            resets_at=status.resets_at,
        )


class BudgetList(msgspec.Struct, frozen=True):
    data: list[BudgetView]
    object: str = "list"


# Shows a ModelQuotaStatus: a key's quota on one model and this month's count under it.
class ModelQuotaView(RecordView, frozen=True):
    key_id: str
    model_id: str
    period: str
    """The month, ``YYYY-MM`` (UTC)."""
    quota_tokens: int
    used_tokens: int
    reserved_tokens: int
    """Held by requests in flight."""
    remaining_tokens: int
    resets_at: datetime


class ModelQuotaList(msgspec.Struct, frozen=True):
    data: list[ModelQuotaView]
    object: str = "list"


# Shows a UsageRecord: a key's usage in a month.
class UsageView(RecordView, frozen=True):
    key_id: str
    period: str
    used_tokens: int
    reserved_tokens: int
    requests: int
    cache_hits: int


class UsageList(msgspec.Struct, frozen=True):
    data: list[UsageView]
    object: Literal["list"] = "list"
    """A literal, so the OpenAPI document tells it from a ``UsageReport`` (``/admin/usage``
    answers either)."""


class CostedView(RecordView, frozen=True, kw_only=True):
    """A view of a record with ``cost_picodollars``, shown as ``cost_usd``: build it with
    ``costed`` (``of`` leaves the cost at its default)."""

    cost_usd: str = "0.00"
    """Dollars, as an exact decimal string (never a float): "0.00135"."""

    @classmethod
    def costed(cls, record: RequestLog | DailyUsage) -> Self:
        return msgspec.structs.replace(cls.of(record), cost_usd=dollars(record.cost_picodollars))


# Shows a DailyUsage row: a day's usage of a key and model.
class DailyUsageView(CostedView, frozen=True):
    day: date
    key_id: str | None
    model: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cache_hits: int
    errors: int


class DailyUsageList(msgspec.Struct, frozen=True):
    data: list[DailyUsageView]
    object: str = "list"


# Shows a RequestLog row.
class LogView(CostedView, frozen=True):
    request_id: str
    created_at: datetime
    route: str
    status: int
    latency_ms: float
    key_id: str | None
    key_prefix: str | None
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    cache_status: str | None
    error_code: str | None
    stream: bool
    body: str | None
    deployment: str | None
    attempts: int | None


class LogPage(msgspec.Struct, frozen=True):
    data: list[LogView]
    total: int
    limit: int
    offset: int
    object: str = "list"


# Shows a RoleSpec.
class RoleView(RecordView, frozen=True):
    name: str
    description: str
    default_rpm: int | None
    default_quota_tokens: int | None


class RoleList(msgspec.Struct, frozen=True):
    data: list[RoleView]
    object: str = "list"
