"""Building a ``RoutedBackend`` for a model with ``[[models.deployments]]``.

Each deployment loads as a model of its own would (``load``), with the deployment's
backend, source and upstream; one that fails to load stays in the list as ``failed``
(readiness shows it) and never gets traffic, unless none loaded, which fails the model.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from llmserver.adapters.inference.http_upstream_client import UpstreamClient
from llmserver.adapters.inference.routed_backend import FallbackLookup, RoutedBackend
from llmserver.adapters.inference.routed_deployments import (
    Deployment,
    Deployments,
    DeploymentTimeouts,
)
from llmserver.adapters.inference.routed_probe import Prober, ProbeTarget, probe_target
from llmserver.domain.backend_ports import InferenceBackend
from llmserver.domain.registry import DeploymentSpec, ModelSpec
from llmserver.domain.routing.breaker import BreakerPolicy
from llmserver.domain.routing.retry import RetryPolicy


@dataclass(frozen=True, slots=True)
class RoutingOptions:
    """The server-wide routing settings; a deployment's own timeouts override these."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    connect_timeout_s: float = 5.0
    first_byte_timeout_s: float = 60.0
    total_timeout_s: float = 300.0
    max_queue: int = 64
    """Requests that wait per model when every deployment is at its ``max_parallel``."""
    seed: int | None = None
    """Seeds weighted routing's random choice (tests, benchmarks); ``None``: random."""


def deployment_spec(model: ModelSpec, deployment: DeploymentSpec) -> ModelSpec:
    """The spec one deployment loads with: the model's, served from that one place."""
    return replace(
        model,
        backend=deployment.backend,
        source=deployment.source,
        upstream_model=deployment.upstream_model,
        api_key_env=deployment.api_key_env,
        deployments=(),
        fallbacks=(),
        context_fallback=None,
    )


def own_deployment(model: ModelSpec) -> DeploymentSpec:
    """The one deployment of a model without ``[[models.deployments]]`` that has
    ``fallbacks``: where the model itself is served from, named as a first deployment
    without a name is."""
    return DeploymentSpec(
        name="deployment-1",
        backend=model.backend,
        source=model.source,
        upstream_model=model.upstream_model,
        api_key_env=model.api_key_env,
    )


async def load_routed(
    spec: ModelSpec,
    load: Callable[[ModelSpec, DeploymentSpec], Awaitable[InferenceBackend]],
    options: RoutingOptions,
    fallbacks: FallbackLookup,
    say: Callable[[str], None],
    client: Callable[[], UpstreamClient],
) -> RoutedBackend:
    """``client``: the upstream client, for the pools of deployments probed actively."""
    deployments: list[Deployment] = []
    for deployment in spec.deployments or (own_deployment(spec),):
        timeouts = DeploymentTimeouts(
            first_byte_s=deployment.first_byte_timeout_s or options.first_byte_timeout_s,
            total_s=deployment.total_timeout_s or options.total_timeout_s,
        )
        prices = spec.prices_at(deployment)
        try:
            backend = await load(deployment_spec(spec, deployment), deployment)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            say(f"deployment {deployment.name} of model {spec.id} failed to load: {error}")
            deployments.append(
                Deployment(deployment, None, options.breaker, timeouts, prices, error)
            )
        else:
            deployments.append(Deployment(deployment, backend, options.breaker, timeouts, prices))
    if all(d.backend is None for d in deployments):
        errors = "; ".join(f"{d.name}: {d.load_error}" for d in deployments)
        raise RuntimeError(f"no deployment loaded ({errors})")
    pool = Deployments(
        spec.id,
        deployments,
        spec.routing,
        max_queue=options.max_queue,
        rng=random.Random(options.seed),
    )
    probed: list[ProbeTarget] = []
    for loaded in deployments:
        if loaded.spec.probe_interval_s is None:
            continue  # the client is not even made for a model without probes
        served = deployment_spec(spec, loaded.spec)
        target = probe_target(loaded, served, client(), options.connect_timeout_s)
        if target is not None:
            probed.append(target)
    prober = Prober(probed) if probed else None
    if prober is not None:
        prober.start()
    return RoutedBackend(spec, pool, retry=options.retry, fallbacks=fallbacks, prober=prober)
