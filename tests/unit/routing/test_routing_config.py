"""``[[models.deployments]]``, ``routing``, ``fallbacks`` and ``context_fallback`` in the
models file: what they load as, and start-up errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmserver.adapters.inference.model_config import ModelConfigError, load_model_specs
from llmserver.domain.registry import (
    BackendKind,
    DeploymentSpec,
    ModelRegistry,
    ModelSpec,
    Routing,
)

ROUTED = """
[[models]]
id = "chat"
context_length = 8192
routing = "least-busy"
fallbacks = ["chat-small"]
context_fallback = "chat-large"

  [[models.deployments]]
  name = "gpu-a"
  backend = "http"
  source = "http://10.0.0.5:8000"
  upstream_model = "meta-llama/Llama-3.1-8B-Instruct"
  api_key_env = "GPU_A_KEY"
  weight = 3
  max_parallel = 32
  connect_timeout_s = 2
  first_byte_timeout_s = 1.5
  total_timeout_s = 300
  probe_interval_s = 5
  probe_path = "/health"

  [[models.deployments]]
  backend = "torch"
  source = "var/models/demo-tiny-llama"

[[models]]
id = "chat-small"
backend = "http"
source = "http://10.0.0.6:8000"

[[models]]
id = "chat-large"
backend = "http"
source = "http://10.0.0.7:8000"
context_length = 32768
"""


def load(tmp_path: Path, text: str) -> tuple[ModelSpec, ...]:
    path = tmp_path / "models.toml"
    path.write_text(text)
    return load_model_specs(path)


def test_a_routed_model_loads_every_field(tmp_path: Path) -> None:
    chat, small, _large = load(tmp_path, ROUTED)
    assert chat.routing is Routing.LEAST_BUSY
    assert chat.fallbacks == ("chat-small",)
    assert chat.context_fallback == "chat-large"
    assert chat.deployments == (
        DeploymentSpec(
            name="gpu-a",
            backend=BackendKind.HTTP,
            source="http://10.0.0.5:8000",
            upstream_model="meta-llama/Llama-3.1-8B-Instruct",
            api_key_env="GPU_A_KEY",
            weight=3,
            max_parallel=32,
            connect_timeout_s=2.0,
            first_byte_timeout_s=1.5,
            total_timeout_s=300.0,
            probe_interval_s=5.0,
            probe_path="/health",
        ),
        DeploymentSpec(
            name="deployment-2", backend=BackendKind.TORCH, source="var/models/demo-tiny-llama"
        ),
    )
    # The first deployment stands for the model where one backend is named.
    assert (chat.backend, chat.source) == (BackendKind.HTTP, "http://10.0.0.5:8000")
    assert small.deployments == ()
    assert small.routing is Routing.WEIGHTED
    ModelRegistry(load(tmp_path, ROUTED))  # the fallbacks name configured models


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('routing = "least-busy"', 'routing = "fastest"'), "field 'routing' must be one of"),
        (('fallbacks = ["chat-small"]', 'fallbacks = "chat-small"'), "'fallbacks' must be"),
        (("weight = 3", "weight = 0"), "deployments[0]: field 'weight' must be a positive"),
        (("max_parallel = 32", "max_parallel = -1"), "field 'max_parallel' must be a positive"),
        (("first_byte_timeout_s = 1.5", 'first_byte_timeout_s = "1"'), "'first_byte_timeout_s'"),
        (('name = "gpu-a"', 'name = "gpu-a"\n  color = "red"'), "unknown fields ['color']"),
        (('  backend = "torch"\n', ""), "deployments[1]: field 'backend' is required"),
        (('backend = "torch"', 'backend = "tpu"'), "field 'backend' must be one of"),
        (('routing = "least-busy"', 'routing = "ordered"\nsource = "x"'), "field 'source' belongs"),
        (('name = "gpu-a"', 'name = "deployment-2"'), "'deployment-2' is used twice"),
        (('name = "gpu-a"', 'name = "a/b"'), "field 'name' must be at most 64 characters"),
        (
            ('source = "var/models/demo-tiny-llama"', 'source = "v"\n  upstream_model = "m"'),
            "deployments[1]: field 'upstream_model' applies to backend 'http' only",
        ),
        (
            ('source = "var/models/demo-tiny-llama"', 'source = "v"\n  probe_interval_s = 1'),
            "deployments[1]: field 'probe_interval_s' applies to backend 'http' only",
        ),
        (("probe_interval_s = 5", "probe_interval_s = 0"), "'probe_interval_s' must be a positive"),
        (("  probe_interval_s = 5\n", ""), "field 'probe_path' needs 'probe_interval_s'"),
        (('probe_path = "/health"', 'probe_path = "health"'), "'probe_path' must start with '/'"),
        (('probe_path = "/health"', 'probe_path = "/a b"'), "'probe_path' must start with '/'"),
        (('probe_path = "/health"', "probe_path = 1"), "'probe_path' must start with '/'"),
    ],
)
def test_bad_routing_config_names_the_field(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    old, new = change
    assert old in ROUTED
    with pytest.raises(ModelConfigError) as error:
        load(tmp_path, ROUTED.replace(old, new, 1))
    assert message in str(error.value)
    assert "models[0] ('chat')" in str(error.value)


def test_routing_without_deployments_is_refused(tmp_path: Path) -> None:
    text = '[[models]]\nid = "m"\nbackend = "http"\nsource = "http://x"\nrouting = "ordered"\n'
    with pytest.raises(ModelConfigError, match="field 'routing' needs"):
        load(tmp_path, text)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('fallbacks = ["chat-small"]', 'fallbacks = ["nope"]'), "'fallbacks' names 'nope'"),
        (('fallbacks = ["chat-small"]', 'fallbacks = ["chat"]'), "'fallbacks' names 'chat'"),
        (("context_length = 32768", "context_length = 8192"), "is not longer than its own"),
        (('context_fallback = "chat-large"', 'context_fallback = "x"'), "'context_fallback'"),
    ],
)
def test_fallbacks_must_name_other_models(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    old, new = change
    with pytest.raises(ValueError, match="model 'chat'") as error:
        ModelRegistry(load(tmp_path, ROUTED.replace(old, new, 1)))
    assert message in str(error.value)
