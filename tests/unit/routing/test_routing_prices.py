"""A deployment's own prices in the models file, and the budget hold of a routed model: the
dearest worst case of wherever its request may be answered."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmserver.adapters.inference.model_config import ModelConfigError, load_model_specs
from llmserver.domain.pricing import Prices, price_per_token
from llmserver.domain.registry import BackendKind, DeploymentSpec, ModelRegistry, ModelSpec

PRICED = """
[[models]]
id = "chat"
input_price_per_mtok = "0.5"
output_price_per_mtok = 2
cached_input_price_per_mtok = "0.25"
  [[models.deployments]]
  name = "same"
  backend = "http"
  source = "http://10.0.0.5:8000"
  [[models.deployments]]
  name = "dearer-input"
  backend = "http"
  source = "http://10.0.0.6:8000"
  input_price_per_mtok = "0.75"
"""


def load(tmp_path: Path, text: str) -> tuple[ModelSpec, ...]:
    path = tmp_path / "models.toml"
    path.write_text(text)
    return load_model_specs(path)


def per_mtok(input_price: str, output_price: str, cached: str | None = None) -> Prices:
    return Prices(
        price_per_token(input_price),
        price_per_token(output_price),
        None if cached is None else price_per_token(cached),
    )


def test_a_deployment_s_prices_default_field_by_field_to_the_model_s(tmp_path: Path) -> None:
    [chat] = load(tmp_path, PRICED)
    same, dearer = chat.deployments
    assert same.prices is None
    assert chat.prices_at(same) == chat.prices == per_mtok("0.5", "2", "0.25")
    assert chat.prices_at(dearer) == per_mtok("0.75", "2", "0.25")


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("output_price_per_mtok", '"abc"', "must be a decimal number"),
        ("input_price_per_mtok", "-1", "must be from 0 to 1000"),
        ("cached_input_price_per_mtok", '"0.0000001"', "must have at most 6 decimal places"),
    ],
)
def test_a_wrong_deployment_price_names_the_deployment_and_field(
    tmp_path: Path, field: str, value: str, says: str
) -> None:
    text = PRICED.replace('input_price_per_mtok = "0.75"', f"{field} = {value}")
    with pytest.raises(ModelConfigError) as caught:
        load(tmp_path, text)
    assert f"deployments[1]: field '{field}' {says}" in str(caught.value)


def spec(
    model_id: str, prices: Prices, *deployments: Prices | None, fallbacks: tuple[str, ...] = ()
) -> ModelSpec:
    return ModelSpec(
        id=model_id,
        backend=BackendKind.HTTP,
        source="http://10.0.0.5:8000",
        prices=prices,
        deployments=tuple(
            DeploymentSpec(f"d{i}", BackendKind.HTTP, "http://10.0.0.5:8000", prices=own)
            for i, own in enumerate(deployments)
        ),
        fallbacks=fallbacks,
    )


def test_the_hold_is_the_dearest_worst_case_of_the_deployments_and_fallbacks() -> None:
    cheap = Prices(input=1, output=2)
    dear_input = Prices(input=100, output=1)
    dear_output = Prices(input=1, output=50)
    registry = ModelRegistry(
        [
            spec("chat", cheap, None, dear_input, fallbacks=("small",)),
            spec("small", cheap, dear_output),
            spec("plain", cheap),
        ]
    )
    chat = registry.by_id["chat"]
    # Each candidate's own worst case, not one made of the dearest input and output.
    assert registry.worst_cost(chat, 10, 1) == 100 * 10 + 1 * 1
    assert registry.worst_cost(chat, 1, 10) == 1 + 50 * 10
    # A model answered only at its own prices holds its own worst case.
    for model_id in ("plain", "small"):
        model = registry.by_id[model_id]
        own = model.prices if model_id == "plain" else dear_output
        assert registry.worst_cost(model, 10, 10) == own.worst_case(10, 10)


def test_the_cached_input_price_counts_towards_the_hold() -> None:
    # A cached price above the input one (Anthropic's cache writes) is the dearer input.
    registry = ModelRegistry([spec("chat", Prices(1, 1), Prices(1, 1, cached_input=9))])
    assert registry.worst_cost(registry.by_id["chat"], 10, 0) == 90
