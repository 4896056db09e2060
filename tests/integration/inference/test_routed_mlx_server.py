"""``mlx_lm.server`` (a third-party OpenAI-compatible server, on Linux's CPU here) as one
deployment of a routed model, next to a loopback upstream that fails: every answer, whole
or streamed, comes from mlx_lm.server, after one failed attempt where the other went first."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from integration.inference.fake_upstream import FakeUpstream
from livesupport import free_port
from llmserver.adapters.inference.http_upstream_client import UpstreamClient
from llmserver.adapters.inference.manager import BackendOptions, MultiModelManager
from llmserver.adapters.inference.routed_loading import RoutingOptions
from llmserver.domain.inference import (
    ChatMessage,
    GenerationParams,
    Prompt,
    StreamEnd,
    TextDelta,
)
from llmserver.domain.registry import BackendKind, DeploymentSpec, ModelSpec, Routing
from llmserver.domain.routing.breaker import BreakerPolicy

pytest.importorskip("mlx_lm")
pytestmark = pytest.mark.slow

CHAT = Prompt(messages=(ChatMessage("user", "Hi"),))


@pytest.fixture(scope="module")
def mlx_server(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("mlx-server") / "mlx_lm.server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlx_lm",
                "server",
                "--model",
                str(demo_model_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            try:
                httpx.get(url + "/v1/models", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture
async def manager(mlx_server: str, demo_model_dir: Path) -> AsyncIterator[MultiModelManager]:
    failing = FakeUpstream(script=["500"])
    await failing.start()
    spec = ModelSpec(
        id="chat",
        backend=BackendKind.HTTP,
        source=failing.url,
        routing=Routing.ORDERED,
        deployments=(
            DeploymentSpec("broken", BackendKind.HTTP, failing.url),
            DeploymentSpec("mlx", BackendKind.HTTP, mlx_server, upstream_model=str(demo_model_dir)),
        ),
    )
    # A breaker that never opens: each request tries "broken" first, then mlx_lm.server.
    options = RoutingOptions(breaker=BreakerPolicy(failure_threshold=1000), seed=1)
    async with UpstreamClient() as client:
        models = MultiModelManager(
            [spec], options=BackendOptions(routing=options), http_client=client
        )
        await models.load_all()
        yield models
        await models.close()
    await failing.stop()


async def test_mlx_lm_server_answers_as_a_deployment(manager: MultiModelManager) -> None:
    backend = manager.backend("chat")
    params = GenerationParams(max_tokens=4, temperature=0.0)
    whole = await backend.generate(CHAT, params)
    assert (whole.served_by, whole.attempts) == ("mlx", 2)
    assert whole.completion_tokens == 4
    assert whole.text
    text = ""
    async for event in backend.stream(CHAT, params):
        if isinstance(event, StreamEnd):
            assert (event.served_by, event.attempts) == ("mlx", 2)
            assert event.completion_tokens == 4
        elif isinstance(event, TextDelta):
            text += event.text
    assert text == whole.text  # greedy: the same answer either way
