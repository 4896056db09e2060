"""Active health: a background probe of the deployments that ask for one.

A deployment with ``probe_interval_s`` (an ``http`` one) is sent ``GET`` its probe path
every that many seconds: its API base's ``/models`` (``{source}/v1/models``), or
``probe_path`` on its ``source``, with its API key, within its connect timeout to connect
and the same again to answer, in a pool of its own (``UpstreamClient.detached``). The
verdict feeds the circuit breaker real requests feed: a failure (no connection, no answer
in time, a status other than 2xx) counts as a failed request does, so a dead deployment's
circuit opens with no client traffic at all; a 2xx closes a circuit that is open or
half-open at once, without waiting for its cool-down or for a client to probe it. A 429 says
nothing (busy, not down). A deployment with requests in flight and a closed circuit is
left to them: its traffic judges it, and the probe never waits behind it.

One task per routed model (``Prober``), started when the model loads and stopped when it
closes (the manager's ``close``, at shutdown). Probes of deployments due together run
together; each is bounded by its timeouts, so the task never falls behind by more than one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from llmserver.adapters.inference.http_request_body import api_base, upstream_headers
from llmserver.adapters.inference.http_upstream_client import Timeouts, Upstream, UpstreamClient
from llmserver.adapters.inference.routed_deployments import Deployment
from llmserver.domain.registry import BackendKind, ModelSpec
from llmserver.domain.routing.breaker import CircuitState

DEFAULT_PROBE_PATH = "/models"
"""Under the deployment's API base (``/v1``): the model list every OpenAI-compatible
server has, which costs it no inference."""


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    deployment: Deployment
    pool: Upstream
    path: str
    headers: bytes
    interval_s: float
    timeouts: Timeouts


def probe_target(
    deployment: Deployment, served: ModelSpec, client: UpstreamClient, connect_timeout_s: float
) -> ProbeTarget | None:
    """What probing ``deployment`` (loaded as ``served``) takes, if it asks for it: a
    loaded ``http`` one with ``probe_interval_s``; ``connect_timeout_s``: the server's."""
    own = deployment.spec
    interval = own.probe_interval_s
    if interval is None or deployment.backend is None or own.backend is not BackendKind.HTTP:
        return None
    base = api_base(served.source)
    if own.probe_path is None:
        path = urlsplit(base).path + DEFAULT_PROBE_PATH
    else:
        path = urlsplit(served.source).path.rstrip("/") + own.probe_path
    timeout_s = own.connect_timeout_s or connect_timeout_s
    return ProbeTarget(
        deployment,
        client.detached(base),
        path,
        upstream_headers(served),  # its API key, as its backend sends it
        interval,
        Timeouts(connect_s=timeout_s, read_s=timeout_s),
    )


async def probe(target: ProbeTarget) -> bool | None:
    """Whether the deployment answered its probe with a 2xx; ``None`` for a 429."""
    timeouts = target.timeouts
    try:
        async with asyncio.timeout(timeouts.connect_s + timeouts.read_s):
            response = await target.pool.send(b"GET", target.path, b"", target.headers, timeouts)
            try:
                await response.read()
            finally:
                response.close()
    except Exception:  # refused, reset, timed out, not HTTP: all say it is not serving
        return False
    if response.status == 429:
        return None
    return 200 <= response.status < 300


class Prober:
    def __init__(
        self, targets: Sequence[ProbeTarget], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._targets = tuple(targets)
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        for target in self._targets:
            target.pool.close()

    async def _run(self) -> None:
        due = [self._clock()] * len(self._targets)
        while True:
            now = self._clock()
            ready = [i for i, at in enumerate(due) if at <= now]
            await asyncio.gather(*(self._probe(self._targets[i]) for i in ready))
            done = self._clock()
            for i in ready:
                due[i] = done + self._targets[i].interval_s
            await asyncio.sleep(max(0.0, min(due) - self._clock()))

    async def _probe(self, target: ProbeTarget) -> None:
        deployment = target.deployment
        breaker = deployment.breaker
        if deployment.in_flight and breaker.state(self._clock()) is CircuitState.CLOSED:
            return
        healthy = await probe(target)
        now = self._clock()
        if healthy is None:
            return
        if not healthy:
            breaker.on_failure(now)
        elif breaker.state(now) is not CircuitState.CLOSED:
            breaker.on_success()
