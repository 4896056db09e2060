"""The services one running app holds, built once at start-up by the factory."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from llmserver.domain.backend_ports import ModelBackends
from llmserver.domain.gateway import Gateway
from llmserver.domain.key_admin import KeyAdmin
from llmserver.domain.ports import (
    AuditLog,
    CompletionCache,
    HotCache,
    RequestLogReader,
    RequestLogRetention,
)
from llmserver.domain.registry import ModelSpec
from llmserver.domain.team_admin import TeamAdmin

if TYPE_CHECKING:
    from litestar import Request
    from litestar.types import Scope

    from llmserver.app.metrics import Metrics
    from llmserver.app.settings import Settings
    from llmserver.domain.ports import Clock


class CheckStatus(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    """Serving, with less than configured (Redis down under ``fail_open``): still ready."""
    FAIL = "fail"


ReadinessCheck = Callable[[], Awaitable[tuple[CheckStatus, str | None]]]
"""Returns (status, detail). Must not raise: a failure is a not-ready answer."""

STATE_KEY = "llmserver"


@dataclass(slots=True)
class Services:
    settings: Settings
    gateway: Gateway
    key_admin: KeyAdmin
    team_admin: TeamAdmin
    logs: RequestLogReader
    retention: RequestLogRetention
    clock: Clock
    metrics: Metrics | None
    started_at: int
    audit: AuditLog
    cache: CompletionCache
    """The durable response cache (the admin API's stats and purges)."""
    hot_cache: HotCache | None
    backends: ModelBackends
    specs: list[ModelSpec]
    checks: dict[str, ReadinessCheck] = field(default_factory=dict)
    log_queue_full: Callable[[], bool] = lambda: False

    async def readiness(self) -> dict[str, tuple[CheckStatus, str | None]]:
        names = list(self.checks)
        results = await asyncio.gather(*(self.checks[name]() for name in names))
        return dict(zip(names, results, strict=True))


def services_of(request: Request[Any, Any, Any]) -> Services:
    return services_in(request.scope)


def services_in(scope: Scope) -> Services:
    """``services_of`` for a raw ASGI scope that Litestar routed: it puts itself in every
    scope it routes, under ``litestar_app`` (a field of its typed ``Scope``). The
    completion lane, which Litestar does not see, is handed the services instead."""
    services: Services = scope["litestar_app"].state[STATE_KEY]
    return services
