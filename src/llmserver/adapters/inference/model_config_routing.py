"""The routing fields of a ``[[models]]`` entry in the models TOML file.

```toml
[[models]]
id = "chat"
context_length = 8192
routing = "least-busy"          # weighted (default) | least-busy | latency | ordered
fallbacks = ["chat-small"]      # models tried in order once every deployment failed
context_fallback = "chat-large" # where a prompt too long for this model goes instead of a 400

  [[models.deployments]]
  name = "gpu-a"                # optional (default deployment-1, -2, ...): a metric label
  backend = "http"              # torch | mlx | http
  source = "http://10.0.0.5:8000"
  upstream_model = "meta-llama/Llama-3.1-8B-Instruct"
  api_key_env = "GPU_A_KEY"
  weight = 3                    # for routing = "weighted" (default 1)
  max_parallel = 32             # its own cap on requests in flight (default none)
  connect_timeout_s = 2         # defaults: LLMSERVER_ROUTING_CONNECT_TIMEOUT_S,
  first_byte_timeout_s = 30     #   LLMSERVER_ROUTING_FIRST_BYTE_TIMEOUT_S,
  total_timeout_s = 300         #   LLMSERVER_REQUEST_TIMEOUT_S
  input_price_per_mtok = "0.20" # its own prices (each defaults to the model's); the
  output_price_per_mtok = "0.80"  #   request log charges the deployment that answered
  probe_interval_s = 5          # active health probe (http only; default none)
  probe_path = "/health"        # default: GET {source}/v1/models
```
An entry with ``deployments`` names no ``backend``, ``source``, ``upstream_model`` or
``api_key_env`` of its own: each deployment does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from llmserver.adapters.inference.model_config_prices import PRICE_FIELDS, parse_prices
from llmserver.domain.pricing import Prices
from llmserver.domain.registry import (
    DEPLOYMENT_NAME_MAX_CHARS,
    BackendKind,
    DeploymentSpec,
    Routing,
)

DEPLOYMENT_ONLY = ("backend", "source", "upstream_model", "api_key_env")
"""What an entry with deployments leaves to them."""
_DEPLOYMENT_KEYS = {
    "name",
    *DEPLOYMENT_ONLY,
    "weight",
    "max_parallel",
    "connect_timeout_s",
    "first_byte_timeout_s",
    "total_timeout_s",
    "probe_interval_s",
    "probe_path",
    *PRICE_FIELDS,
}
_PROBE_PATH = re.compile(r"/[!-~]{0,199}")
"""A path of printable ASCII without spaces: it goes into the request line as it is."""

Fail = Callable[[str], Exception]


def routing_options(
    where: str, entry: dict[str, Any], fail: Fail, prices: Prices
) -> dict[str, Any]:
    """``deployments``, ``routing``, ``fallbacks`` and ``context_fallback`` of one entry,
    only those given; ``prices``: the model's, which its deployments' default to."""
    options: dict[str, Any] = {}
    routing = entry.get("routing")
    if routing is not None:
        if routing not in {r.value for r in Routing}:
            choices = ", ".join(r.value for r in Routing)
            raise fail(f"{where}: field 'routing' must be one of {choices}, not {routing!r}")
        options["routing"] = Routing(routing)
    fallbacks = entry.get("fallbacks")
    if fallbacks is not None:
        if not isinstance(fallbacks, list) or not all(isinstance(f, str) and f for f in fallbacks):
            raise fail(f"{where}: field 'fallbacks' must be a list of model ids")
        options["fallbacks"] = tuple(fallbacks)
    context_fallback = entry.get("context_fallback")
    if context_fallback is not None:
        if not isinstance(context_fallback, str) or not context_fallback:
            raise fail(f"{where}: field 'context_fallback' must be a model id")
        options["context_fallback"] = context_fallback
    raw = entry.get("deployments")
    if raw is None:
        if "routing" in options:
            raise fail(f"{where}: field 'routing' needs [[models.deployments]] to route over")
        return options
    if not isinstance(raw, list) or not raw:
        raise fail(f"{where}: 'deployments' must be a non-empty array of tables")
    given = [name for name in DEPLOYMENT_ONLY if name in entry]
    if given:
        raise fail(
            f"{where}: with [[models.deployments]], field {given[0]!r} belongs in each "
            "deployment, not in the model"
        )
    deployments = tuple(
        _deployment(f"{where}: deployments[{i}]", i, d, fail, prices) for i, d in enumerate(raw)
    )
    names = [d.name for d in deployments]
    for name in names:
        if names.count(name) > 1:
            raise fail(f"{where}: deployment name {name!r} is used twice")
    options["deployments"] = deployments
    return options


def _deployment(
    where: str, index: int, raw: Any, fail: Fail, model_prices: Prices
) -> DeploymentSpec:
    if not isinstance(raw, dict):
        raise fail(f"{where}: must be a table")
    unknown = set(raw) - _DEPLOYMENT_KEYS
    if unknown:
        raise fail(f"{where}: unknown fields {sorted(unknown)}")

    def text(name: str, *, required: bool = False) -> str | None:
        value = raw.get(name)
        if value is None and required:
            raise fail(f"{where}: field '{name}' is required")
        if value is not None and (not isinstance(value, str) or not value):
            raise fail(f"{where}: field '{name}' must be a non-empty string")
        return value

    def positive(name: str, kind: type) -> Any:
        value = raw.get(name)
        ok = isinstance(value, int | float) if kind is float else isinstance(value, int)
        if value is not None and (not ok or isinstance(value, bool) or value <= 0):
            noun = "number of seconds" if kind is float else "integer"
            raise fail(f"{where}: field '{name}' must be a positive {noun}")
        return None if value is None else kind(value)

    name = text("name")
    if name is not None and (len(name) > DEPLOYMENT_NAME_MAX_CHARS or "/" in name):
        raise fail(
            f"{where}: field 'name' must be at most {DEPLOYMENT_NAME_MAX_CHARS} characters "
            "without '/'"
        )
    backend = text("backend", required=True)
    if backend not in {k.value for k in BackendKind}:
        choices = ", ".join(k.value for k in BackendKind)
        raise fail(f"{where}: field 'backend' must be one of {choices}, not {backend!r}")
    source = text("source", required=True)
    assert source is not None
    for http_only in ("upstream_model", "api_key_env", "probe_interval_s", "probe_path"):
        if http_only in raw and backend != BackendKind.HTTP:
            raise fail(f"{where}: field '{http_only}' applies to backend 'http' only")
    return DeploymentSpec(
        name=name or f"deployment-{index + 1}",
        backend=BackendKind(backend),
        source=source,
        upstream_model=text("upstream_model"),
        api_key_env=text("api_key_env"),
        weight=positive("weight", int) or 1,
        max_parallel=positive("max_parallel", int),
        connect_timeout_s=positive("connect_timeout_s", float),
        first_byte_timeout_s=positive("first_byte_timeout_s", float),
        total_timeout_s=positive("total_timeout_s", float),
        probe_interval_s=positive("probe_interval_s", float),
        probe_path=_probe_path(where, raw, fail),
        prices=(
            parse_prices(where, raw, fail, model_prices)
            if any(name in raw for name in PRICE_FIELDS)
            else None
        ),
    )


def _probe_path(where: str, raw: dict[str, Any], fail: Fail) -> str | None:
    path = raw.get("probe_path")
    if path is None:
        return None
    if not isinstance(path, str) or not _PROBE_PATH.fullmatch(path):
        raise fail(
            f"{where}: field 'probe_path' must start with '/' and be at most 200 printable "
            "ASCII characters without spaces"
        )
    if "probe_interval_s" not in raw:
        raise fail(f"{where}: field 'probe_path' needs 'probe_interval_s'")
    return path
