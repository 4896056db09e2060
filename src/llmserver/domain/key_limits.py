"""A key's limits: their names and the values an admin may give them."""

from __future__ import annotations

from collections.abc import Mapping

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
