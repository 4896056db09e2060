"""The tiny demo model (tests/conftest.py builds it once per run) as a spec, for the
inference tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmserver.domain.registry import BackendKind, ModelSpec

os.environ.setdefault("HF_HUB_OFFLINE", "1")


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
