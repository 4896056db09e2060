"""The composition root: the one place that picks which adapter serves which port.

``build_services(settings)`` wires the server (``composition_cli`` what ``llmserver keys``,
``teams`` and ``logs`` need, from the same adapter-picking functions). Building starts nothing:
no task, no connection, no process (``lifecycle`` starts and stops what is built here).

Adapters are imported inside the functions that pick them: ``llmserver keys`` imports this
module and must not pay for prometheus-client, structlog, Redis or torch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from llmserver.adapters.clock import SystemClock
from llmserver.app.composition_models import model_manager
from llmserver.app.services import Services
from llmserver.domain.cache_keys import CachePolicy
from llmserver.domain.gateway import Accounts, Gateway, GatewayPolicy, Ledgers
from llmserver.domain.gateway.holds import Limits
from llmserver.domain.gateway.traced import TracedGateway
from llmserver.domain.key_admin import KeyAdmin
from llmserver.domain.keys import KeyHasher
from llmserver.domain.registry import ModelRegistry, ModelSpec
from llmserver.domain.team_admin import TeamAdmin

if TYPE_CHECKING:
    from llmserver.adapters.inference.manager import MultiModelManager
    from llmserver.adapters.log_batcher import RequestLogBatcher
    from llmserver.adapters.redis import RedisStores, RedisUsageStore
    from llmserver.adapters.sql.database import SqlDatabase
    from llmserver.adapters.sql.ownership import DatabaseClaim
    from llmserver.adapters.write_behind import PeriodicFlush, WriteBehindCompletionCache
    from llmserver.app.maintenance import Upkeep
    from llmserver.app.metrics import Metrics
    from llmserver.app.settings import Settings
    from llmserver.domain.backend_ports import ModelBackends
    from llmserver.domain.ports import (
        Clock,
        HotCache,
        KeyStore,
        RateLimitStore,
        TeamStore,
        UsageStore,
    )
    from llmserver.domain.tracing import Tracer


@dataclass(frozen=True, slots=True)
class Overrides:
    """Replacements for adapters, for tests and benchmarks (e.g. an instant backend)."""

    backends: ModelBackends | None = None
    specs: Sequence[ModelSpec] | None = None
    clock: Clock | None = None
    tracer: Tracer | None = None
    """Used when tracing is on (``LLMSERVER_OTEL_ENDPOINT``), e.g. with another exporter."""


@dataclass(frozen=True, slots=True)
class OwnedDatabase:
    """What a single process, the only server on its database, runs on top."""

    claim: Callable[[], Awaitable[DatabaseClaim]]
    """Takes the database for this process (``DatabaseClaimed`` if another server has)."""
    usage_flush: PeriodicFlush
    """Writes the in-memory quota ledger behind."""
    budget_flush: PeriodicFlush
    """Writes the in-memory budget ledger behind."""
    model_quota_flush: PeriodicFlush
    """Writes the in-memory per-model quota ledger behind."""


@dataclass(frozen=True, slots=True)
class SharedQuota:
    """What replicas sharing one Redis run for their quota counters."""

    store: RedisUsageStore
    """Holds this replica's lease (started and closed around the flush)."""
    usage_flush: PeriodicFlush
    """Writes this replica's settled usage from Redis behind to the database."""


@dataclass(frozen=True, slots=True)
class StateStores:
    """The quota and budget ledgers and the durable cache, with what writes them behind."""

    usage: UsageStore
    budget: UsageStore
    model_quota: UsageStore
    cache: WriteBehindCompletionCache
    cache_flush: PeriodicFlush
    owned: OwnedDatabase | None
    """For a single process; ``None`` for replicas."""
    shared: tuple[SharedQuota, ...] = ()
    """For replicas with Redis, the quota's, the budgets' and the per-model quotas' (the
    same machinery on other keys); none for replicas without: they read and write them
    through the database."""


@dataclass(frozen=True, slots=True)
class ServerComposition:
    """A wired server: its ``Services`` and every part ``lifecycle`` starts and closes."""

    services: Services
    metrics: Metrics
    database: SqlDatabase
    redis: RedisStores | None
    batcher: RequestLogBatcher
    state: StateStores
    backends: ModelBackends
    models: MultiModelManager | None
    """The backends to load and close; ``None`` when ``Overrides`` supplied them."""
    specs: Sequence[ModelSpec]
    upkeep: Upkeep
    tracer: Tracer | None = None
    """Closed last, so that it exports the spans of the last requests."""


def sql_database(url: str, *, writer_process: bool = False) -> SqlDatabase:
    # Imported here: SQLAlchemy takes a good part of a second to import, which
    # `llmserver --help` would pay too.
    from llmserver.adapters.sql.database import SqlDatabase

    return SqlDatabase.from_url(url, writer_process=writer_process)


def require_tracing_installed(settings: Settings) -> None:
    """Refuses tracing asked for (``LLMSERVER_OTEL_ENDPOINT``) without the ``otel`` extra,
    naming the variable: ``serve`` checks it before it starts anything."""
    if settings.otel_endpoint is None:
        return
    try:
        import opentelemetry.exporter.otlp.proto.http
        import opentelemetry.sdk  # noqa: F401
    except ImportError:
        from llmserver.app.settings import SettingsError

        raise SettingsError(
            "otel_endpoint",
            settings.otel_endpoint,
            "unset, or the otel extra installed (pip install 'llmserver[otel]')",
        ) from None


def build_tracer(settings: Settings, overrides: Overrides | None = None) -> Tracer | None:
    """The OpenTelemetry tracer when ``LLMSERVER_OTEL_ENDPOINT`` is set, else ``None``:
    tracing off, and nothing traced is built (see ``domain.tracing``)."""
    if settings.otel_endpoint is None:
        return None
    if overrides is not None and overrides.tracer is not None:
        return overrides.tracer
    require_tracing_installed(settings)
    from llmserver.adapters.otel_tracer import OtelTracer

    return OtelTracer(
        settings.otel_endpoint,
        service_name=settings.otel_service_name,
        log_bodies=settings.log_bodies,
    )


def build_services(
    settings: Settings, overrides: Overrides | None = None, tracer: Tracer | None = None
) -> ServerComposition:
    """Wire the server for ``settings``; nothing runs until ``lifecycle`` starts it.
    ``tracer`` (``build_tracer``'s) traces the gateway and the backends."""
    from llmserver.adapters.key_cache import CachedKeyStore
    from llmserver.adapters.log_batcher import RequestLogBatcher
    from llmserver.adapters.team_cache import CachedTeamStore
    from llmserver.app.maintenance import Upkeep
    from llmserver.app.metrics import Metrics
    from llmserver.app.metrics_scrape import BatcherState, embedding_passes
    from llmserver.app.model_specs import model_specs
    from llmserver.app.settings import CacheScope, SqliteWriter

    chosen = overrides or Overrides()
    clock = chosen.clock or SystemClock()
    hasher = KeyHasher(settings.require_server_secret())
    specs = list(chosen.specs) if chosen.specs is not None else model_specs(settings)
    registry = ModelRegistry(specs)
    # prometheus-client's own variable, read where it reads it (at import): workers that
    # share one port and this directory render each other's values.
    metrics = Metrics(
        allowed_models=[s.id for s in specs],
        multiprocess_dir=os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None,
    )
    database = sql_database(
        settings.database_url, writer_process=settings.sqlite_writer is SqliteWriter.PROCESS
    )
    redis, limiter, hot = _shared_stores(settings, metrics)
    batcher = RequestLogBatcher(
        database.logs,
        flush_interval_ms=settings.log_flush_ms,
        max_batch_rows=settings.log_batch_rows,
        max_queue=settings.log_queue_max,
        on_flush=metrics.observe_flush,
    )
    metrics.set_batcher_source(
        lambda: BatcherState(
            batcher.queue_size, batcher.last_flush_seconds or 0.0, batcher.dead_lettered_rows
        )
    )
    state = _state_stores(database, settings, redis)
    if hot is not None and settings.cache_max_rows is not None:
        from llmserver.adapters.write_behind import HitRecordingHotCache

        # The size cap evicts the least recently hit: it must see the hot layer's hits.
        hot = HitRecordingHotCache(hot, state.cache, clock.now)
    models: MultiModelManager | None = None
    if chosen.backends is not None:
        backends = chosen.backends
    else:
        backends = models = model_manager(specs, settings, tracer)
    metrics.set_queue_depth_source(lambda: {s.model_id: s.queue_depth for s in backends.statuses()})
    metrics.set_embedding_passes_source(lambda: embedding_passes(backends.statuses()))
    metrics.set_prefix_cache_source(
        lambda: {s.model_id: s.prefix_cache for s in backends.statuses() if s.prefix_cache}
    )
    metrics.set_deployments_source(backends.statuses)
    keys: KeyStore = CachedKeyStore(database.keys, settings.key_cache_ttl_s)
    teams: TeamStore = CachedTeamStore(database.teams, settings.key_cache_ttl_s)
    # Picked here, once: with tracing off the plain gateway runs, without a check per step.
    gateway_type: Callable[..., Gateway] = (
        Gateway if tracer is None else partial(TracedGateway, tracer)
    )
    gateway = gateway_type(
        accounts=Accounts(keys, teams),
        hasher=hasher,
        ledgers=Ledgers(state.usage, state.budget, state.model_quota),
        limits=_limits(redis, limiter),
        cache=state.cache,
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
            max_n=settings.max_n,
        ),
    )
    services = Services(
        settings=settings,
        gateway=gateway,
        key_admin=KeyAdmin(
            keys, state.usage, hasher, clock, registry, state.budget, state.model_quota, teams
        ),
        team_admin=TeamAdmin(teams, clock, usage=state.usage, budget=state.budget),
        logs=database.logs,
        retention=database.retention,
        clock=clock,
        metrics=metrics,
        started_at=int(time.time()),
        audit=database.audit,
        cache=state.cache,
        hot_cache=hot,
        backends=backends,
        specs=specs,
        log_queue_full=lambda: batcher.full,
    )
    upkeep = Upkeep(
        state.cache, database.retention, clock, settings.cache_max_rows, settings.log_retention_days
    )
    return ServerComposition(
        services, metrics, database, redis, batcher, state, backends, models, specs, upkeep, tracer
    )


def _shared_stores(
    settings: Settings, metrics: Metrics
) -> tuple[RedisStores | None, RateLimitStore, HotCache | None]:
    """The rate limiter and hot cache: in Redis when there is one, else in this process."""
    from llmserver.adapters.memory import MemoryHotCache, MemoryRateLimitStore

    if not settings.redis_url:
        return None, MemoryRateLimitStore(), MemoryHotCache() if settings.hot_cache else None
    from llmserver.adapters.redis import RedisStores

    redis = RedisStores.from_url(
        settings.redis_url,
        failure_policy=settings.redis_failure_policy.value,
        on_error=metrics.redis_error,
    )
    return redis, redis.limiter, redis.hot_cache if settings.hot_cache else None


def _limits(redis: RedisStores | None, requests: RateLimitStore) -> Limits:
    """The TPM windows and parallel slots: in Redis when there is one, else in this process."""
    if redis is not None:
        return Limits(requests=requests, tokens=redis.token_rate, parallel=redis.parallel)
    from llmserver.adapters.memory import MemoryParallelStore, MemoryTokenRateStore

    return Limits(requests=requests, tokens=MemoryTokenRateStore(), parallel=MemoryParallelStore())


def _state_stores(
    database: SqlDatabase, settings: Settings, redis: RedisStores | None
) -> StateStores:
    """The quota ledger and the durable cache, per deployment.

    A single process keeps the ledger in memory, replicas in Redis (without Redis, in the
    database); both write it behind (see ``adapters.write_behind``), which takes every
    database round trip off the request path.
    """
    from llmserver.adapters.sql.ownership import DatabaseClaim
    from llmserver.adapters.write_behind import (
        PeriodicFlush,
        WriteBehindCompletionCache,
        WriteBehindUsageStore,
    )

    cache = WriteBehindCompletionCache(database.cache, index=settings.single_process)
    interval_s = settings.state_flush_ms / 1000
    cache_flush = PeriodicFlush("completion_cache", cache.flush, interval_s=interval_s)
    if not settings.single_process:
        if redis is None:
            ledgers = (database.usage, database.budget, database.model_quota)
            return StateStores(*ledgers, cache, cache_flush, owned=None)
        quota = redis.usage_store(database.usage)
        budget = redis.usage_store(database.budget, "budget")
        model_quota = redis.usage_store(database.model_quota, "model-usage")
        flushes = {
            s: PeriodicFlush(n, s.flush, interval_s=interval_s, final=s.flush_at_shutdown)
            for n, s in (("usage", quota), ("budget", budget), ("model_usage", model_quota))
        }
        shared = tuple(SharedQuota(store, flush) for store, flush in flushes.items())
        return StateStores(quota, budget, model_quota, cache, cache_flush, None, shared)
    usage, spend = WriteBehindUsageStore(database.usage), WriteBehindUsageStore(database.budget)
    model_usage = WriteBehindUsageStore(database.model_quota)
    owned = OwnedDatabase(
        partial(DatabaseClaim.take, database.engine),
        PeriodicFlush("usage", usage.flush, interval_s=interval_s),
        PeriodicFlush("budget", spend.flush, interval_s=interval_s),
        PeriodicFlush("model_usage", model_usage.flush, interval_s=interval_s),
    )
    return StateStores(usage, spend, model_usage, cache, cache_flush, owned)
