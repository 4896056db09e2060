"""The MultiModelManager over real backends: eager loading, failures, readiness."""

from __future__ import annotations

from dataclasses import replace

import pytest

from llmserver.adapters.inference.manager import BackendOptions, MultiModelManager
from llmserver.domain.errors import ErrorKind, ModelNotFound, Unavailable
from llmserver.domain.inference import GenerationParams, Prompt
from llmserver.domain.registry import BackendKind, ModelSpec

pytestmark = pytest.mark.torch


async def test_loads_eagerly_and_reports_each_model(demo_spec: ModelSpec) -> None:
    pytest.importorskip("transformers")
    broken = replace(demo_spec, id="broken", source="/nonexistent/model-dir")
    remote = ModelSpec(
        id="remote",
        backend=BackendKind.HTTP,
        source="http://127.0.0.1:9",
        api_key_env="LLMSERVER_TEST_UNSET_KEY",
    )
    manager = MultiModelManager(
        [demo_spec, broken, remote], options=BackendOptions(max_batch_size=2, max_queue=4)
    )
    with pytest.raises(Unavailable, match="still loading"):
        manager.backend(demo_spec.id)
    assert [s.ready for s in manager.statuses()] == [False, False, False]

    messages: list[str] = []
    await manager.load_all(messages.append)
    try:
        backend = manager.backend(demo_spec.id)
        # Seeded: the demo model's random weights can sample an end of sequence early
        # (CI saw 2 tokens of 4 once); with the seed, this sample is the same every run.
        params = GenerationParams(max_tokens=4, seed=7)
        completion = await backend.generate(Prompt(text="Hi"), params)
        assert completion.completion_tokens == 4

        with pytest.raises(Unavailable, match="'broken' failed to load: ") as raised:
            manager.backend("broken")
        assert raised.value.kind is ErrorKind.UNAVAILABLE
        with pytest.raises(Unavailable, match="LLMSERVER_TEST_UNSET_KEY, which is not set"):
            manager.backend("remote")
        with pytest.raises(ModelNotFound):
            manager.backend("never-configured")

        statuses = {s.model_id: s for s in manager.statuses()}
        assert statuses[demo_spec.id].ready
        assert statuses[demo_spec.id].details["state"] == "ready"
        assert statuses[demo_spec.id].details["max_batch_size"] == "2"
        assert not statuses["broken"].ready
        assert statuses["broken"].error is not None
        assert set(manager.load_seconds) == {demo_spec.id, "broken", "remote"}
        assert messages[0] == f"loading model 1/3: {demo_spec.id} (torch from {demo_spec.source})"
        assert any(m.startswith(f"model {demo_spec.id} ready in ") for m in messages)
        assert any(m.startswith("model broken failed to load: ") for m in messages)
    finally:
        await manager.close()
    with pytest.raises(Unavailable, match="is shut down"):
        manager.backend(demo_spec.id)


@pytest.mark.mlx
async def test_mlx_models_load_through_the_manager(demo_spec: ModelSpec) -> None:
    pytest.importorskip("mlx_lm")
    manager = MultiModelManager([replace(demo_spec, backend=BackendKind.MLX)])
    await manager.load_all()
    try:
        backend = manager.backend(demo_spec.id)
        assert backend.status().details["backend"] == "mlx"
        params = GenerationParams(max_tokens=3, seed=7)  # seeded, as above
        completion = await backend.generate(Prompt(text="Hi"), params)
        assert completion.completion_tokens == 3
    finally:
        await manager.close()


@pytest.mark.mlx
async def test_a_models_own_max_batch_size_wins_over_the_servers(demo_spec: ModelSpec) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("mlx_lm")
    torch_spec = replace(demo_spec, max_batch_size=3)
    mlx_spec = replace(demo_spec, id="demo-mlx", backend=BackendKind.MLX, max_batch_size=5)
    manager = MultiModelManager(
        [torch_spec, mlx_spec], options=BackendOptions(max_batch_size=2, max_queue=4)
    )
    await manager.load_all()
    try:
        rows = {s.model_id: s.details["max_batch_size"] for s in manager.statuses()}
        assert rows == {torch_spec.id: "3", mlx_spec.id: "5"}
    finally:
        await manager.close()
