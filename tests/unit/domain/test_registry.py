"""The model registry: names and aliases, profiles, unknown models."""

from __future__ import annotations

import pytest

from llmserver.domain.errors import ErrorKind, ModelNotFound
from llmserver.domain.registry import (
    DEMO_MODEL_ID,
    MODEL_ID_MAX_CHARS,
    PROFILES,
    BackendKind,
    ModelKind,
    ModelRegistry,
    ModelSpec,
    profile_models,
)

A = ModelSpec(id="org/a", aliases=("a", "alpha"), backend=BackendKind.TORCH, source="org/a")
B = ModelSpec(id="org/b", backend=BackendKind.HTTP, source="http://upstream/v1")


def test_a_model_resolves_by_id_and_by_every_alias() -> None:
    registry = ModelRegistry([A, B])
    assert registry.resolve("org/a") is registry.resolve("a") is registry.resolve("alpha") is A
    assert registry.resolve("org/b") is B
    assert registry.all() == (A, B)
    assert set(registry.by_id) == {"org/a", "org/b"}


@pytest.mark.parametrize("name", ["c", "", "ORG/A", "Alpha", "org/a "])
def test_an_unknown_name_is_model_not_found(name: str) -> None:
    with pytest.raises(ModelNotFound) as caught:
        ModelRegistry([A, B]).resolve(name)
    assert (caught.value.kind, caught.value.model, caught.value.param) == (
        ErrorKind.NOT_FOUND,
        name,
        "model",
    )


def test_a_name_can_belong_to_one_model_only() -> None:
    with pytest.raises(ValueError, match="configured twice"):
        ModelRegistry([A, A])
    clash = ModelSpec(id="org/c", aliases=("alpha",), backend=BackendKind.MLX, source="x")
    with pytest.raises(ValueError, match="used by two models"):
        ModelRegistry([A, clash])
    alias_is_an_id = ModelSpec(id="c", aliases=("org/a",), backend=BackendKind.MLX, source="x")
    with pytest.raises(ValueError, match="used by two models"):
        ModelRegistry([A, alias_is_an_id])


def test_a_model_id_is_at_most_what_the_request_log_and_cache_store() -> None:
    longest = ModelSpec(id="m" * MODEL_ID_MAX_CHARS, backend=BackendKind.MLX, source="x")
    assert ModelRegistry([longest]).resolve(longest.id) is longest
    with pytest.raises(ValueError, match=f"longer than {MODEL_ID_MAX_CHARS}"):
        ModelRegistry([ModelSpec(id=longest.id + "m", backend=BackendKind.MLX, source="x")])


@pytest.mark.parametrize(
    ("profile", "model", "backend"),
    [
        ("demo", DEMO_MODEL_ID, BackendKind.TORCH),
        ("cpu", "meta-llama/Llama-3.2-1B-Instruct", BackendKind.TORCH),
        ("local", "mlx-community/Meta-Llama-3.1-8B-Instruct-4bit", BackendKind.MLX),
    ],
)
def test_profiles_serve_their_model(profile: str, model: str, backend: BackendKind) -> None:
    registry = ModelRegistry(profile_models(profile, demo_model_dir="/models/demo"))
    spec = registry.resolve(model)
    assert spec.backend is backend
    for alias in spec.aliases:
        assert registry.resolve(alias) is spec


def test_the_demo_profile_loads_the_given_directory_on_cpu() -> None:
    chat, embedding = profile_models("demo", demo_model_dir="/models/demo")
    assert (chat.source, chat.device, chat.kind) == ("/models/demo", "cpu", ModelKind.CHAT)
    assert (embedding.source, embedding.device, embedding.kind) == (
        "/models/demo/embedding",
        "cpu",
        ModelKind.EMBEDDING,
    )
    assert (chat.capabilities, embedding.capabilities) == (("chat", "completions"), ("embeddings",))


def test_every_listed_profile_exists_and_others_are_refused() -> None:
    for profile in PROFILES:
        profile_models(profile, demo_model_dir="/d")
    assert profile_models("none", demo_model_dir="/d") == ()
    with pytest.raises(ValueError, match="unknown profile"):
        profile_models("gpu-cluster", demo_model_dir="/d")
