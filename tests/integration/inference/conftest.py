"""The tiny demo model, built once per test session, for every inference test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmserver.domain.registry import BackendKind, ModelSpec

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from llmserver.adapters.inference.demo_model import build_demo_model

    return build_demo_model(tmp_path_factory.mktemp("demo") / "tiny", size="tiny")


@pytest.fixture
def demo_spec(demo_model_dir: Path) -> ModelSpec:
    return ModelSpec(
        id="demo-tiny",
        backend=BackendKind.TORCH,
        source=str(demo_model_dir),
        context_length=512,
        device="cpu",
        dtype="float32",
    )
