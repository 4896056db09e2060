"""Starting and stopping a server that ``composition.build_services`` wired.

``running(composed, publish)`` starts the parts in order (the database writer, the
request-log batcher, the write-behind flushes and the database claim, the model loading in
the background so that ``/healthz`` answers and ``/readyz`` reports progress), registers the
readiness checks, publishes the services, creates the first admin key if asked, and on exit
stops everything in the reverse order: the models first, then the flushes of the state they
settled, the batcher, Redis, the database and the metrics.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

import structlog

from llmserver import __version__
from llmserver.adapters.sql.ownership import DatabaseClaimed
from llmserver.app.services import CheckStatus
from llmserver.app.settings import RedisFailurePolicy
from llmserver.domain.keys import Role

if TYPE_CHECKING:
    from llmserver.adapters.inference.manager import MultiModelManager
    from llmserver.adapters.redis import RedisUsageStore
    from llmserver.adapters.sql.database import SqlDatabase
    from llmserver.app.composition import ServerComposition, SharedQuota, StateStores
    from llmserver.app.metrics import Metrics
    from llmserver.app.services import ReadinessCheck, Services
    from llmserver.app.settings import Settings
    from llmserver.domain.backend_ports import ModelBackends
    from llmserver.domain.gateway import Gateway
    from llmserver.domain.key_admin import KeyAdmin
    from llmserver.domain.ports import Clock

log = structlog.get_logger("llmserver")


@asynccontextmanager
async def running(
    composed: ServerComposition, publish: Callable[[Services], None]
) -> AsyncIterator[None]:
    """Start ``composed``, hand its services to ``publish``, stop it all on exit.

    What started is stopped even when a later step fails (a refused UI key, a database
    another server holds): every start pushes its stop onto the exit stack first.
    """
    services = composed.services
    async with AsyncExitStack() as stack:
        await _start(stack, composed)
        publish(services)
        await _bootstrap(services.key_admin, services.settings)
        freeze_heap()
        log.info("started", version=__version__, models=[s.id for s in composed.specs])
        try:
            yield
        finally:
            log.info("shutting_down", queued_log_rows=composed.batcher.queue_size)


async def _start(stack: AsyncExitStack, composed: ServerComposition) -> None:
    services = composed.services
    if composed.tracer is not None:
        # First pushed, so closed last: it exports the spans of everything stopped before.
        stack.push_async_callback(composed.tracer.close)
    stack.callback(composed.metrics.close)
    database = composed.database
    stack.push_async_callback(database.dispose)
    await database.writer.start()
    checks: dict[str, ReadinessCheck] = {"database": _database_check(database)}
    if composed.redis is not None:
        stack.push_async_callback(composed.redis.close)
        # Before the connection closes: give this replica's parallel-slot lease up.
        stack.push_async_callback(composed.redis.parallel_slots.close)
        await composed.redis.parallel_slots.start()
        checks["redis"] = _redis_check(composed.redis.ping, services.settings.redis_failure_policy)
    await composed.batcher.start()
    stack.push_async_callback(composed.batcher.close)
    # Before the models: the exit stack flushes these after the last request settled.
    await _start_state_stores(stack, composed.state, services.clock)
    if composed.models is not None:
        _load_models(stack, composed.models, composed.metrics)
    checks["models"] = _models_check(composed.backends)
    for task in composed.upkeep.tasks():
        stack.push_async_callback(_cancel, task)
    await _check_ui_key(services.settings, services.gateway)
    services.checks.update(checks)


async def _start_state_stores(stack: AsyncExitStack, state: StateStores, clock: Clock) -> None:
    stack.push_async_callback(state.cache_flush.close)
    state.cache_flush.start()
    for shared in state.shared:
        await _start_shared_quota(stack, shared)
    owned = state.owned
    if owned is None:
        return
    try:
        claim = await owned.claim()
    except DatabaseClaimed:
        raise
    except Exception as exc:  # unreachable now: readyz says so; the claim is not retried
        log.warning("database_claim_unavailable", error=f"{type(exc).__name__}: {exc}")
    else:
        stack.push_async_callback(claim.release)
    try:
        entries = await state.cache.load_index(clock.now())
        log.info("cache_index_loaded", entries=entries)
    except Exception as exc:  # an unmigrated database must not stop start-up: readyz says so
        log.warning("cache_index_unavailable", error=f"{type(exc).__name__}: {exc}")
    for flush in (owned.usage_flush, owned.budget_flush, owned.model_quota_flush):
        stack.push_async_callback(flush.close)
        flush.start()


async def _start_shared_quota(stack: AsyncExitStack, shared: SharedQuota) -> None:
    # Closed in reverse: the last flush, then the lease is given up.
    stack.push_async_callback(shared.store.close)
    await shared.store.start()
    stack.push_async_callback(shared.usage_flush.close)
    shared.usage_flush.start()
    stack.push_async_callback(_cancel, asyncio.create_task(_reconcile(shared.store)))


async def _reconcile(store: RedisUsageStore) -> None:
    try:
        await store.reconcile()
    except Exception as exc:  # Redis down at start: the next replica's start retries it
        log.warning("usage_reconcile_failed", error=f"{type(exc).__name__}: {exc}")


def _load_models(stack: AsyncExitStack, manager: MultiModelManager, metrics: Metrics) -> None:
    async def load() -> None:
        await manager.load_all(progress=lambda message: log.info("model_loading", detail=message))
        freeze_heap()
        seconds = manager.load_seconds
        for status in manager.statuses():
            metrics.model_loaded(status.model_id, seconds.get(status.model_id, 0.0), status.ready)

    stack.push_async_callback(manager.close)
    stack.push_async_callback(_cancel, asyncio.create_task(load()))


def freeze_heap() -> None:
    """Move every object alive now out of the cyclic garbage collector's sight.

    The modules, routes, ORM mappings and model code of a started server are never garbage,
    yet each full collection walked all of them: 85-95 ms pauses under load, the whole p99
    of the gateway benchmark. Frozen, a full collection only walks what requests created.
    """
    gc.collect()
    gc.freeze()


async def _check(
    name: str, probe: Callable[[], Awaitable[tuple[CheckStatus, str | None]]]
) -> tuple[CheckStatus, str | None]:
    try:
        return await probe()
    except Exception as exc:  # readiness reports every failure instead of raising
        return CheckStatus.FAIL, f"{name} unreachable: {type(exc).__name__}: {exc}"


def _database_check(database: SqlDatabase) -> ReadinessCheck:
    async def probe() -> tuple[CheckStatus, str | None]:
        current, head, behind = await database.migration_state()
        if behind:
            schema = "no schema" if current is None else f"schema at {current}"
            return CheckStatus.FAIL, f"{schema}, code expects {head}: run `llmserver migrate`"
        if current != head:
            # The migrations Job of an upgrade runs before the rollout: the old pods keep
            # serving on the newer schema, which the upgrade rules require to be compatible.
            return CheckStatus.OK, (
                f"schema at {current}, newer than this code's head {head} "
                "(a later release's migration)"
            )
        return CheckStatus.OK, None

    return lambda: _check("database", probe)


def _redis_check(ping: Callable[[], Awaitable[Any]], policy: RedisFailurePolicy) -> ReadinessCheck:
    async def probe() -> tuple[CheckStatus, str | None]:
        try:
            await ping()
        except Exception as exc:  # an outage is an answer here, not an error
            unreachable = f"redis unreachable: {type(exc).__name__}: {exc}"
        else:
            return CheckStatus.OK, None
        if policy is RedisFailurePolicy.FAIL_OPEN:
            # Every request is still served, so taking the pod out of the Service would
            # only turn a Redis outage into a full one.
            return CheckStatus.DEGRADED, (
                f"{unreachable}; serving under LLMSERVER_REDIS_FAILURE_POLICY=fail_open: "
                "RPM limits and quotas are not enforced and the hot cache misses until it is back"
            )
        return CheckStatus.FAIL, (
            f"{unreachable}; LLMSERVER_REDIS_FAILURE_POLICY=fail_closed refuses requests "
            "with 503 until it is back"
        )

    return probe


def _models_check(backends: ModelBackends) -> ReadinessCheck:
    """Each model loaded; a routed model is ready while one of its deployments is healthy,
    and the detail names every deployment's state (``degraded`` while one is not)."""

    async def probe() -> tuple[CheckStatus, str | None]:
        statuses = backends.statuses()
        broken = [f"{s.model_id}: {s.error or 'loading'}" for s in statuses if not s.ready]
        routed = [
            f"{s.model_id}: " + ", ".join(f"{d.name} {d.state}" for d in s.deployments)
            for s in statuses
            if s.deployments
        ]
        unhealthy = any(not d.healthy for s in statuses for d in s.deployments)
        status = (
            CheckStatus.FAIL if broken else CheckStatus.DEGRADED if unhealthy else CheckStatus.OK
        )
        return status, "; ".join(broken + routed) or None

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
