"""Active health probes of a routed model's deployments, against loopback upstreams (real
HTTP): what is probed and with which key, what a probe's answer does to the circuit, and
that closing the model stops them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from integration.inference.fake_upstream import FakeUpstream
from llmserver.adapters.inference.http_upstream_client import Timeouts, UpstreamClient
from llmserver.adapters.inference.manager import BackendOptions, MultiModelManager
from llmserver.adapters.inference.routed_deployments import Deployment, DeploymentTimeouts
from llmserver.adapters.inference.routed_loading import RoutingOptions
from llmserver.adapters.inference.routed_probe import Prober, ProbeTarget
from llmserver.domain.inference import DeploymentStatus
from llmserver.domain.pricing import FREE
from llmserver.domain.registry import BackendKind, DeploymentSpec, ModelSpec, Routing
from llmserver.domain.routing.breaker import BreakerPolicy, CircuitState

INTERVAL_S = 0.05
# Only a probe can close a circuit within a test.
OPTIONS = RoutingOptions(breaker=BreakerPolicy(failure_threshold=2, cooldown_s=600))


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    server = FakeUpstream()
    await server.start()
    yield server
    await server.stop()


Start = Callable[..., Awaitable[MultiModelManager]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    async with UpstreamClient() as client:
        managers: list[MultiModelManager] = []

        async def started(*deployments: DeploymentSpec) -> MultiModelManager:
            spec = ModelSpec(
                id="chat",
                backend=BackendKind.HTTP,
                source=deployments[0].source,
                deployments=deployments,
                routing=Routing.ORDERED,
            )
            manager = MultiModelManager(
                [spec], options=BackendOptions(routing=OPTIONS), http_client=client
            )
            await manager.load_all()
            managers.append(manager)
            return manager

        yield started
        for manager in managers:
            await manager.close()


def probed(
    source: str, *, api_key_env: str | None = None, probe_path: str | None = None
) -> DeploymentSpec:
    return DeploymentSpec(
        "probed",
        BackendKind.HTTP,
        source,
        api_key_env=api_key_env,
        probe_interval_s=INTERVAL_S,
        probe_path=probe_path,
    )


def state(manager: MultiModelManager, name: str = "probed") -> DeploymentStatus:
    [status] = manager.statuses()
    [found] = [d for d in status.deployments if d.name == name]
    return found


async def settles(manager: MultiModelManager, wanted: str, within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while state(manager).state != wanted:
        assert time.monotonic() < deadline, state(manager)
        await asyncio.sleep(0.01)


async def test_a_probe_gets_the_model_list_with_the_deployment_s_key(
    upstream: FakeUpstream, start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROBE_KEY", "sk-probe")
    await start(probed(upstream.url, api_key_env="PROBE_KEY"))
    await asyncio.sleep(INTERVAL_S * 4)
    assert len(upstream.seen) >= 2
    assert {(seen.path, seen.headers["authorization"]) for seen in upstream.seen} == {
        ("/v1/models", "Bearer sk-probe")
    }


async def test_a_configured_path_is_probed_on_the_source(
    upstream: FakeUpstream, start: Start
) -> None:
    await start(probed(upstream.url + "/api", probe_path="/health"))
    await asyncio.sleep(INTERVAL_S * 2)
    assert {seen.path for seen in upstream.seen} == {"/api/health"}


async def test_failed_probes_open_the_circuit_and_a_good_one_closes_it(
    upstream: FakeUpstream, start: Start
) -> None:
    upstream.script = ["500"]
    other = FakeUpstream()
    await other.start()
    try:
        manager = await start(
            probed(upstream.url), DeploymentSpec("other", BackendKind.HTTP, other.url)
        )
        await settles(manager, "open")
        assert state(manager).requests == 0  # no request was sent: the probe saw it
        assert state(manager, "other").state == "closed"
        upstream.script = ["ok"]
        await settles(manager, "closed")  # not the 600 s cool-down
        assert other.seen == []  # the other deployment was never probed (none asked)
    finally:
        await other.stop()


async def test_a_busy_answer_says_nothing_about_health(
    upstream: FakeUpstream, start: Start
) -> None:
    upstream.script = ["429"]
    manager = await start(probed(upstream.url))
    await asyncio.sleep(INTERVAL_S * 6)
    assert len(upstream.seen) >= 3
    assert state(manager).state == "closed"


async def test_closing_the_model_stops_its_probes(upstream: FakeUpstream, start: Start) -> None:
    manager = await start(probed(upstream.url))
    await asyncio.sleep(INTERVAL_S * 2)
    await manager.close()
    count = len(upstream.seen)
    await asyncio.sleep(INTERVAL_S * 4)
    assert len(upstream.seen) == count


async def test_traffic_judges_a_busy_deployment_until_its_circuit_opens(
    upstream: FakeUpstream,
) -> None:
    spec = probed(upstream.url)
    deployment = Deployment(
        spec, None, OPTIONS.breaker, DeploymentTimeouts(first_byte_s=1, total_s=1), FREE
    )
    async with UpstreamClient() as client:
        target = ProbeTarget(
            deployment,
            client.detached(upstream.url),
            "/v1/models",
            b"",
            INTERVAL_S,
            Timeouts(connect_s=1, read_s=1),
        )
        prober = Prober([target])
        deployment.in_flight = 1  # a request is out: it says how the deployment is
        prober.start()
        try:
            await asyncio.sleep(INTERVAL_S * 4)
            assert upstream.seen == []
            for _ in range(OPTIONS.breaker.failure_threshold):
                deployment.breaker.on_failure(time.monotonic())
            await asyncio.sleep(INTERVAL_S * 4)  # open: the probe looks, and closes it
            assert upstream.seen != []
            assert deployment.breaker.state(time.monotonic()) is CircuitState.CLOSED
        finally:
            await prober.close()
