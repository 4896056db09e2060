"""The composition root: the one place that knows which adapter serves which port.

``create_app(settings)`` builds a Litestar app whose lifespan opens the stores, starts the
request-log batcher, loads the models (in the background, so ``/healthz`` answers and
``/readyz`` reports progress) and closes everything in reverse order on shutdown.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from litestar import Litestar, Request, Response, get
from litestar.config.cors import CORSConfig
from litestar.openapi import OpenAPIConfig

from llmserver import __version__
from llmserver.adapters.clock import SystemClock
from llmserver.adapters.key_cache import CachedKeyStore
from llmserver.adapters.log_batcher import RequestLogBatcher
from llmserver.adapters.memory import MemoryHotCache, MemoryRateLimitStore
from llmserver.adapters.sql.database import SqlDatabase
from llmserver.adapters.sql.ownership import DatabaseClaim, DatabaseClaimed
from llmserver.adapters.write_behind import (
    PeriodicFlush,
    WriteBehindCompletionCache,
    WriteBehindUsageStore,
)
from llmserver.app.auth import authenticate_admin
from llmserver.app.errors import EXCEPTION_HANDLERS
from llmserver.app.logging import AccessLogMiddleware, access_logger, configure_logging
from llmserver.app.metrics import Metrics
from llmserver.app.metrics_scrape import BatcherState
from llmserver.app.model_specs import model_specs
from llmserver.app.openapi import document_completion_routes, swagger_ui
from llmserver.app.routes.admin import admin_router
from llmserver.app.routes.health import healthz, readyz
from llmserver.app.routes.openai.routes import CompletionLane, openai_router
from llmserver.app.routes.ui import ui_router
from llmserver.app.services import STATE_KEY, ReadinessCheck, Services, services_of
from llmserver.app.settings import CacheScope, Settings, SqliteWriter
from llmserver.domain.cache_keys import CachePolicy
from llmserver.domain.gateway import Gateway, GatewayPolicy
from llmserver.domain.key_admin import KeyAdmin
from llmserver.domain.keys import KeyHasher, Role
from llmserver.domain.ports import (
    Clock,
    HotCache,
    ModelBackends,
    RateLimitStore,
    UsageStore,
)
from llmserver.domain.registry import ModelRegistry, ModelSpec

log = structlog.get_logger("llmserver")


@dataclass(frozen=True, slots=True)
class Overrides:
    """Replacements for adapters, for tests and benchmarks (e.g. an instant backend)."""

    backends: ModelBackends | None = None
    specs: Sequence[ModelSpec] | None = None
    clock: Clock | None = None


async def _check(name: str, probe: Any) -> tuple[bool, str | None]:
    try:
        return await probe()  # type: ignore[no-any-return]
    except Exception as exc:  # readiness reports every failure instead of raising
        return False, f"{name} unreachable: {type(exc).__name__}: {exc}"


def _database_check(database: SqlDatabase) -> ReadinessCheck:
    async def probe() -> tuple[bool, str | None]:
        current, head = await database.migration_state()
        if current != head:
            return False, f"schema at {current}, code expects {head}: run `llmserver migrate`"
        return True, None

    return lambda: _check("database", probe)


def _redis_check(ping: Any) -> ReadinessCheck:
    async def probe() -> tuple[bool, str | None]:
        await ping()
        return True, None

    return lambda: _check("redis", probe)


def _models_check(backends: ModelBackends) -> ReadinessCheck:
    async def probe() -> tuple[bool, str | None]:
        statuses = backends.statuses()
        broken = [f"{s.model_id}: {s.error or 'loading'}" for s in statuses if not s.ready]
        return (not broken, "; ".join(broken) or None)

    return lambda: _check("models", probe)


async def _bootstrap(key_admin: KeyAdmin, settings: Settings) -> None:
    """On a store with no keys at all: create the first admin key if asked, else say how."""
    try:
        if settings.bootstrap_admin:
            created = await key_admin.create_first_admin()
            if created is not None:
                key, plaintext = created
                log.info("first_admin_key_created", key_prefix=key.prefix)
                # The secret goes to the terminal once, never through the logger.
                print_secret(
                    "\n  First admin API key (shown once, store it now):\n"
                    f"    {plaintext}\n"
                    "  Try: curl -H 'Authorization: Bearer <key>' "
                    f"http://{settings.host}:{settings.port}/v1/models\n"
                )
            return
        if not await key_admin.list():
            log.warning(
                "no_api_keys",
                hint="create the first admin key with `make seed-key` "
                "(or `llmserver keys create --name admin --role admin`)",
            )
    except Exception as exc:  # an unmigrated database must not stop start-up: readyz says so
        log.warning("key_store_unavailable", error=f"{type(exc).__name__}: {exc}")


def print_secret(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


@asynccontextmanager
async def _lifespan(app: Litestar, settings: Settings, overrides: Overrides) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        clock = overrides.clock or SystemClock()
        hasher = KeyHasher(settings.require_server_secret())
        specs = list(overrides.specs) if overrides.specs is not None else model_specs(settings)
        registry = ModelRegistry(specs)
        # prometheus-client's own variable, read where it reads it (at import): workers that
        # share one port and this directory render each other's values.
        metrics = Metrics(
            allowed_models=[s.id for s in specs],
            multiprocess_dir=os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None,
        )
        stack.callback(metrics.close)

        database = SqlDatabase.from_url(
            settings.database_url,
            writer_process=settings.sqlite_writer is SqliteWriter.PROCESS,
        )
        stack.push_async_callback(database.dispose)
        await database.writer.start()
        checks: dict[str, ReadinessCheck] = {"database": _database_check(database)}

        limiter: RateLimitStore = MemoryRateLimitStore()
        hot: HotCache | None = MemoryHotCache() if settings.hot_cache else None
        if settings.redis_url:
            from llmserver.adapters.redis import RedisStores

            redis = RedisStores.from_url(
                settings.redis_url,
                failure_policy=settings.redis_failure_policy.value,
                on_error=metrics.redis_error,
            )
            stack.push_async_callback(redis.close)
            limiter = redis.limiter
            if settings.hot_cache:
                hot = redis.hot_cache
            checks["redis"] = _redis_check(redis.ping)

        batcher = RequestLogBatcher(
            database.logs,
            flush_interval_ms=settings.log_flush_ms,
            max_batch_rows=settings.log_batch_rows,
            max_queue=settings.log_queue_max,
            on_flush=metrics.observe_flush,
        )
        await batcher.start()
        stack.push_async_callback(batcher.close)
        metrics.set_batcher_source(
            lambda: BatcherState(
                batcher.queue_size, batcher.last_flush_seconds or 0.0, batcher.dead_lettered_rows
            )
        )

        # Before the models: the exit stack flushes these after the last request settled.
        usage, cache = await _state_stores(stack, database, settings, clock)
        backends = overrides.backends
        if backends is None:
            backends = await _start_models(stack, specs, settings, metrics)
        checks["models"] = _models_check(backends)
        metrics.set_queue_depth_source(
            lambda: {s.model_id: s.queue_depth for s in backends.statuses()}
        )

        keys = CachedKeyStore(database.keys, settings.key_cache_ttl_s)
        gateway = Gateway(
            keys=keys,
            hasher=hasher,
            usage=usage,
            limiter=limiter,
            cache=cache,
            hot_cache=hot,
            registry=registry,
            backends=backends,
            clock=clock,
            log=batcher.submit,
            telemetry=metrics,
            policy=GatewayPolicy(
                cache=CachePolicy(
                    enabled=settings.cache_enabled,
                    ttl_seconds=settings.cache_ttl_s,
                    shared_across_keys=settings.cache_scope is CacheScope.GLOBAL,
                ),
                cache_hits_count_against_quota=settings.cache_hits_count_against_quota,
            ),
        )
        purge = asyncio.create_task(_purge_expired_cache(cache, clock))
        stack.push_async_callback(_cancel, purge)
        key_admin = KeyAdmin(keys, usage, hasher, clock, registry)
        await _check_ui_key(settings, gateway)
        app.state[STATE_KEY] = Services(
            settings=settings,
            gateway=gateway,
            key_admin=key_admin,
            logs=database.logs,
            clock=clock,
            metrics=metrics,
            started_at=int(time.time()),
            checks=checks,
            log_queue_full=lambda: batcher.full,
        )
        await _bootstrap(key_admin, settings)
        freeze_heap()
        log.info("started", version=__version__, models=[s.id for s in specs])
        try:
            yield
        finally:
            log.info("shutting_down", queued_log_rows=batcher.queue_size)


CACHE_PURGE_INTERVAL_S = 600.0


def freeze_heap() -> None:
    """Move every object alive now out of the cyclic garbage collector's sight.

    The modules, routes, ORM mappings and model code of a started server are never garbage,
    yet each full collection walked all of them: 85-95 ms pauses under load, the whole p99
    of the gateway benchmark. Frozen, a full collection only walks what requests created.
    """
    gc.collect()
    gc.freeze()


async def _state_stores(
    stack: AsyncExitStack, database: SqlDatabase, settings: Settings, clock: Clock
) -> tuple[UsageStore, WriteBehindCompletionCache]:
    """The quota ledger and the durable cache, per deployment.

    Replicas share every decision through the database. A single process keeps them in
    memory and writes them behind (see ``adapters.write_behind``), which takes every
    database round trip off the request path.
    """
    cache = WriteBehindCompletionCache(database.cache, index=settings.single_process)
    interval_s = settings.state_flush_ms / 1000
    cache_flush = PeriodicFlush("completion_cache", cache.flush, interval_s=interval_s)
    stack.push_async_callback(cache_flush.close)
    cache_flush.start()
    if not settings.single_process:
        return database.usage, cache
    try:
        claim = await DatabaseClaim.take(database.engine)
    except DatabaseClaimed:
        raise
    except Exception as exc:  # unreachable now: readyz says so; the claim is not retried
        log.warning("database_claim_unavailable", error=f"{type(exc).__name__}: {exc}")
    else:
        stack.push_async_callback(claim.release)
    try:
        entries = await cache.load_index(clock.now())
        log.info("cache_index_loaded", entries=entries)
    except Exception as exc:  # an unmigrated database must not stop start-up: readyz says so
        log.warning("cache_index_unavailable", error=f"{type(exc).__name__}: {exc}")
    usage = WriteBehindUsageStore(database.usage)
    usage_flush = PeriodicFlush("usage", usage.flush, interval_s=interval_s)
    stack.push_async_callback(usage_flush.close)
    usage_flush.start()
    return usage, cache


async def _purge_expired_cache(cache: WriteBehindCompletionCache, clock: Clock) -> None:
    """Expired entries are already ignored on read; this only reclaims their space."""
    while True:
        await asyncio.sleep(CACHE_PURGE_INTERVAL_S)
        try:
            removed = await cache.purge_expired(clock.now())
            if removed:
                log.info("cache_purged", entries=removed)
        except Exception as exc:  # the database may be restarting; try again next round
            log.warning("cache_purge_failed", error=f"{type(exc).__name__}: {exc}")


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


class UiKeyRefused(RuntimeError):
    pass


async def _check_ui_key(settings: Settings, gateway: Gateway) -> None:
    """The key injected into /ui is visible to anyone who opens the page: never an admin's."""
    if settings.ui_key is None:
        return
    try:
        principal = await gateway.authenticate(settings.ui_key)
    except Exception as exc:
        raise UiKeyRefused(f"LLMSERVER_UI_KEY is not a usable key: {exc}") from None
    if principal.key.role not in (Role.PLAYGROUND, Role.USER):
        raise UiKeyRefused(
            "LLMSERVER_UI_KEY must be a key with the playground or user role, "
            f"not {principal.key.role.value}: it is visible to everyone who opens /ui."
        )


async def _start_models(
    stack: AsyncExitStack, specs: Sequence[ModelSpec], settings: Settings, metrics: Metrics
) -> ModelBackends:
    from llmserver.adapters.inference.manager import BackendOptions, MultiModelManager

    manager = MultiModelManager(
        specs,
        options=BackendOptions(
            threads=settings.torch_threads,
            max_batch_size=settings.max_batch_size,
            max_queue=settings.max_queue,
            request_timeout_s=settings.request_timeout_s,
        ),
    )

    async def load() -> None:
        await manager.load_all(progress=lambda message: log.info("model_loading", detail=message))
        freeze_heap()
        seconds = manager.load_seconds
        for status in manager.statuses():
            metrics.model_loaded(status.model_id, seconds.get(status.model_id, 0.0), status.ready)

    stack.push_async_callback(manager.close)
    stack.push_async_callback(_cancel, asyncio.create_task(load()))
    return manager


@get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    services = services_of(request)
    if services.settings.metrics_require_key:
        await authenticate_admin(request)
    assert services.metrics is not None
    body, content_type = services.metrics.render()
    # As a header, not media_type: Litestar appends "; charset=utf-8" to every text/* media
    # type, and prometheus-client's already ends with it.
    return Response(body, headers={"content-type": content_type})


def create_app(settings: Settings, overrides: Overrides | None = None) -> Litestar:
    configure_logging(settings.log_format, settings.log_level)
    chosen = overrides or Overrides()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with _lifespan(app, settings, chosen):
            yield

    cors = (
        CORSConfig(
            allow_origins=list(settings.cors_origins),
            allow_headers=["authorization", "x-api-key", "content-type", "x-request-id"],
            expose_headers=[
                "x-request-id",
                "x-cache",
                "retry-after",
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
        )
        if settings.cors_origins
        else None
    )
    app = Litestar(
        route_handlers=[
            healthz,
            readyz,
            metrics_endpoint,
            openai_router(),
            admin_router(),
            ui_router(Path(settings.ui_dist_dir), settings.ui_key),
        ],
        lifespan=[lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        cors_config=cors,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="LLM Server",
            version=__version__,
            path="/openapi",
            render_plugins=[swagger_ui()],
        ),
        logging_config=None,
    )
    document_completion_routes(app)
    return app


def asgi_app(settings: Settings, overrides: Overrides | None = None) -> Any:
    """The Litestar app wrapped in the access-log / request-id middleware.

    The wrapper sits outside Litestar so that every request gets an id and an access line,
    404s and body-size refusals included.
    """
    app = create_app(settings, overrides)

    def metrics() -> Metrics | None:
        services: Services | None = app.state.get(STATE_KEY)
        return services.metrics if services is not None else None

    lane = CompletionLane(app, enabled=not settings.cors_origins)
    return AccessLogMiddleware(
        lane, metrics, access_logger(settings.log_format, settings.log_level)
    )
