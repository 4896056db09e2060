"""Liveness and readiness.

``/healthz`` answers 200 while the process runs, touching nothing. ``/readyz`` checks every
dependency a request needs (database reachable and migrated to head, Redis when
configured, each model loaded) and answers 503 while any is not ready, naming why.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get

from llmserver.app import paths
from llmserver.app.services import services_of


class Check(msgspec.Struct, frozen=True, omit_defaults=True):
    status: str
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
    checks = {name: Check("ok" if ok else "fail", detail) for name, (ok, detail) in results.items()}
    ready = all(ok for ok, _ in results.values())
    return Response(
        Readiness("ready" if ready else "not_ready", checks),
        status_code=200 if ready else 503,
        headers={"cache-control": "no-store"},
    )
