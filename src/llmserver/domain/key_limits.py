"""A key's limits: their names and the values an admin may give them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from llmserver.domain.errors import InvalidRequest

MAX_QUOTA_TOKENS = 10**15
MAX_RPM = 10**9
MAX_TPM = 10**12
MAX_PARALLEL = 10**6
"""Limits beyond these mean "unlimited" anyway; the columns (BIGINT, INTEGER) hold them."""

LIMITS = (
    ("quota_tokens", 0, MAX_QUOTA_TOKENS),
    ("rpm_limit", 1, MAX_RPM),
    ("tpm_limit", 1, MAX_TPM),
    ("max_parallel", 1, MAX_PARALLEL),
)
"""Each limit's name (an ``ApiKey`` field), least and most value; ``None`` is no limit."""


def check_limits(limits: Mapping[str, int | None]) -> None:
    """Refuse a limit out of its range, naming it."""
    for param, least, most in LIMITS:
        limit = limits.get(param)
        if limit is not None and not least <= limit <= most:
            raise InvalidRequest(f"{param} must be between {least} and {most}.", param=param)


class Limited(Protocol):
    """A key or a team: what its own limits are."""

    @property
    def rpm_limit(self) -> int | None: ...
    @property
    def tpm_limit(self) -> int | None: ...
    @property
    def max_parallel(self) -> int | None: ...
    @property
    def quota_tokens(self) -> int | None: ...
    @property
    def budget_nanodollars(self) -> int | None: ...


def check_record_limits(record: Limited) -> None:
    """What a key or a team (``record``) may hold: limits of at least 1, a quota and a
    budget not negative; ``None`` is none of each."""
    for name in ("rpm_limit", "tpm_limit", "max_parallel"):
        limit = getattr(record, name)
        if limit is not None and limit < 1:
            raise ValueError(f"{name} must be at least 1 (or None for no limit)")
    quota_tokens = record.quota_tokens
    if quota_tokens is not None and quota_tokens < 0:
        raise ValueError("quota_tokens must not be negative (or None for no quota)")
    budget = record.budget_nanodollars
    if budget is not None and budget < 0:
        raise ValueError("budget_nanodollars must not be negative (or None for no budget)")


MODEL_LIMITS = (
    ("rpm_limit", 1, MAX_RPM),
    ("tpm_limit", 1, MAX_TPM),
    ("quota_tokens", 0, MAX_QUOTA_TOKENS),
)
"""The limits a key may set per model (``ModelLimit``'s fields), least and most value."""


@dataclass(frozen=True, slots=True)
class ModelLimit:
    """A key's own limits on one model: an extra cap on that model's share of the key's
    traffic, in windows of their own (bucketed by key and model) and, for ``quota_tokens``,
    a monthly ledger of its own (``quota.model_ledger_id``). The key's limits still cap its
    total over every model; a request is admitted only if both admit it."""

    model_id: str
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    quota_tokens: int | None = None
    """Tokens per calendar month (UTC) on this model, reserved and settled as the key's
    own quota is."""

    def __post_init__(self) -> None:
        for name, least, _ in MODEL_LIMITS:
            limit = getattr(self, name)
            if limit is not None and limit < least:
                raise ValueError(f"{name} must be at least {least} (or None for no limit)")

    def limits(self) -> dict[str, int | None]:
        """Every limit by its field name, ``None`` for none."""
        return {name: getattr(self, name) for name, _, _ in MODEL_LIMITS}


def check_model_limits(model_id: str, limits: Mapping[str, int | None]) -> None:
    """Refuse a per-model limit out of its range, naming the model and the limit."""
    for param, least, most in MODEL_LIMITS:
        limit = limits.get(param)
        if limit is not None and not least <= limit <= most:
            raise InvalidRequest(
                f"model_limits[{model_id[:100]!r}].{param} must be between {least} and {most}.",
                param="model_limits",
            )
