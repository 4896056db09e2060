"""The models a server is configured with: its profile, plus the models file if one is set.

A module of its own, importing nothing heavy, so the CLI (``llmserver keys`` checks model
names against it) finds the same list ``serve`` builds without importing the web app.
"""

from __future__ import annotations

from pathlib import Path

from llmserver.adapters.inference.model_config import load_model_specs
from llmserver.app.settings import Settings
from llmserver.domain.registry import ModelSpec, profile_models


def model_specs(settings: Settings) -> list[ModelSpec]:
    specs = list(profile_models(settings.profile, demo_model_dir=settings.demo_model_dir))
    if settings.models_file:
        specs.extend(load_model_specs(Path(settings.models_file)))
    return specs
