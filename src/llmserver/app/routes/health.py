"""Liveness and readiness.

``/healthz`` answers 200 while the process runs, touching nothing. ``/readyz`` checks every
dependency a request needs (database reachable and migrated to at least the code's head,
Redis when configured, each model loaded) and answers 503 while any is not ready, naming
why. A dependency the server serves without (Redis down under ``fail_open``) is reported
``degraded`` and keeps it ready.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get

from llmserver.app import paths
from llmserver.app.services import CheckStatus, services_of


class Check(msgspec.Struct, frozen=True, omit_defaults=True):
    status: CheckStatus
    detail: str | None = None


class Readiness(msgspec.Struct, frozen=True):
    status: str
    checks: dict[str, Check]


@get(paths.HEALTHZ, sync_to_thread=False, include_in_schema=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get(paths.READYZ, include_in_schema=False)
async def readyz(request: Request[Any, Any, Any]) -> Response[Readiness]:
    services = services_of(request)
    results = await services.readiness()
    checks = {name: Check(status, detail) for name, (status, detail) in results.items()}
    ready = all(status is not CheckStatus.FAIL for status, _ in results.values())
    return Response(
        Readiness("ready" if ready else "not_ready", checks),
        status_code=200 if ready else 503,
        headers={"cache-control": "no-store"},
    )
