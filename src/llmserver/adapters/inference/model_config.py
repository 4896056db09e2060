"""Extra model specs from a TOML file.

```toml
[[models]]
id = "llama-3.2-1b"
backend = "torch"              # torch | mlx | http
source = "meta-llama/Llama-3.2-1B-Instruct"
aliases = ["small"]
context_length = 8192
device = "cpu"
dtype = "bfloat16"                # auto | float32 | float16 | bfloat16 (torch only)
quantize = "none"                 # none | int8: dynamic int8 linear layers (torch on CPU)
max_batch_size = 8                # rows run together (default LLMSERVER_MAX_BATCH_SIZE)
[models.defaults]
max_tokens = 256

[[models]]
id = "remote"
backend = "http"
source = "http://127.0.0.1:11434"
upstream_model = "llama3.2"
api_key_env = "UPSTREAM_API_KEY"
input_price_per_mtok = "0.15"    # dollars per million tokens: a number or a decimal string
output_price_per_mtok = 0.60     # default 0 (a local model costs nothing)
cached_input_price_per_mtok = "0.075"  # prompt tokens the upstream read from its cache

[[models]]
id = "all-minilm-l6-v2"
kind = "embedding"             # chat (the default) | embedding
backend = "torch"              # torch | http (an upstream's /v1/embeddings)
source = "/path/to/all-MiniLM-L6-v2"
context_length = 256
pooling = "model"              # model (its own, else mean) | mean | cls
normalize = true               # unit-length vectors (the default)
matryoshka = false             # true: requests may ask for fewer `dimensions`
```
Every error names the file, the entry and the field. Several deployments per model,
fallbacks and routing: ``model_config_routing``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from llmserver.adapters.inference.model_config_prices import PRICE_FIELDS, parse_prices
from llmserver.adapters.inference.model_config_routing import routing_options
from llmserver.domain.pricing import FREE
from llmserver.domain.registry import (
    DTYPES,
    QUANTIZE_MODES,
    BackendKind,
    ModelDefaults,
    ModelKind,
    ModelSpec,
    Pooling,
)


class ModelConfigError(ValueError):
    """The model config file is unreadable or an entry in it is invalid."""


_STR_FIELDS = (
    "revision",
    "device",
    "dtype",
    "quantize",
    "upstream_model",
    "api_key_env",
    "owned_by",
)
_KNOWN = {f.name for f in fields(ModelSpec)} - {"prices"} | set(PRICE_FIELDS)
_DEFAULTS = ModelDefaults()


def load_model_specs(path: Path) -> tuple[ModelSpec, ...]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelConfigError(f"{path}: cannot read the model config: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ModelConfigError(f"{path}: not valid TOML: {exc}") from exc
    unknown_top = set(data) - {"models"}
    if unknown_top:
        raise ModelConfigError(f"{path}: unknown top-level keys {sorted(unknown_top)}")
    entries = data.get("models", [])
    if not isinstance(entries, list):
        raise ModelConfigError(f"{path}: 'models' must be an array of tables ([[models]])")
    return tuple(_spec(path, i, entry) for i, entry in enumerate(entries))


def _spec(path: Path, index: int, entry: Any) -> ModelSpec:
    where = f"{path}: models[{index}]"
    if not isinstance(entry, dict):
        raise ModelConfigError(f"{where}: must be a table")
    if isinstance(entry.get("id"), str):
        where = f"{path}: models[{index}] ({entry['id']!r})"
    unknown = set(entry) - _KNOWN
    if unknown:
        raise ModelConfigError(f"{where}: unknown fields {sorted(unknown)}")

    def text(name: str) -> str | None:
        value = entry.get(name)
        if value is not None and (not isinstance(value, str) or not value):
            raise ModelConfigError(f"{where}: field '{name}' must be a non-empty string")
        return value

    def required(name: str) -> str:
        value = text(name)
        if value is None:
            raise ModelConfigError(f"{where}: field '{name}' is required")
        return value

    model_id = required("id")
    prices = parse_prices(where, entry, ModelConfigError, FREE)
    routing = routing_options(where, entry, ModelConfigError, prices)
    source, backend = _served_from(where, entry, routing, required)
    if backend not in set(BackendKind):
        choices = ", ".join(k.value for k in BackendKind)
        raise ModelConfigError(
            f"{where}: field 'backend' must be one of {choices}, not {backend!r}"
        )
    aliases = entry.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        raise ModelConfigError(f"{where}: field 'aliases' must be a list of non-empty strings")

    def positive_int(name: str) -> int | None:
        value = entry.get(name)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            raise ModelConfigError(f"{where}: field '{name}' must be a positive integer")
        return value

    context_length = positive_int("context_length") or 4096
    max_batch_size = positive_int("max_batch_size")
    options: dict[str, Any] = {name: text(name) for name in _STR_FIELDS}
    options.update(_embedding_options(where, entry, text))
    _check_weights(where, BackendKind(backend), options, given=set(entry))
    return ModelSpec(
        id=model_id,
        backend=BackendKind(backend),
        source=source,
        aliases=tuple(aliases),
        context_length=context_length,
        max_batch_size=max_batch_size,
        defaults=_defaults(where, entry.get("defaults", {})),
        prices=prices,
        **routing,
        **{name: value for name, value in options.items() if value is not None},
    )


def _served_from(
    where: str, entry: dict[str, Any], routing: dict[str, Any], required: Callable[[str], str]
) -> tuple[str, str]:
    """The model's ``source`` and ``backend``: its own, or with deployments the first
    one's (which stand for the model where one is named, as in a trace)."""
    deployments = routing.get("deployments", ())
    if not deployments:
        return required("source"), required("backend")
    if entry.get("kind", ModelKind.CHAT.value) != ModelKind.CHAT.value:
        raise ModelConfigError(f"{where}: [[models.deployments]] apply to chat models only")
    return deployments[0].source, deployments[0].backend.value


def _choice(where: str, name: str, value: str | None, kinds: type[StrEnum]) -> Any:
    if value is not None and value not in {k.value for k in kinds}:
        choices = ", ".join(k.value for k in kinds)
        raise ModelConfigError(f"{where}: field '{name}' must be one of {choices}, not {value!r}")
    return None if value is None else kinds(value)


def _embedding_options(
    where: str, entry: dict[str, Any], text: Callable[[str], str | None]
) -> dict[str, Any]:
    """``kind`` and the fields only an embedding model takes."""
    options: dict[str, Any] = {
        "kind": _choice(where, "kind", text("kind"), ModelKind),
        "pooling": _choice(where, "pooling", text("pooling"), Pooling),
    }
    for flag in ("normalize", "matryoshka"):
        value = entry.get(flag)
        if value is not None and not isinstance(value, bool):
            raise ModelConfigError(f"{where}: field '{flag}' must be true or false")
        options[flag] = value
    given = [name for name in ("pooling", "normalize", "matryoshka") if name in entry]
    if options["kind"] is not ModelKind.EMBEDDING and given:
        raise ModelConfigError(
            f"{where}: {', '.join(repr(g) for g in given)} only apply to an embedding model "
            '(kind = "embedding")'
        )
    if options["kind"] is ModelKind.EMBEDDING and entry.get("backend") == BackendKind.MLX:
        raise ModelConfigError(f"{where}: embedding models run on the torch or http backend")
    return {name: value for name, value in options.items() if value is not None}


def _check_weights(
    where: str, backend: BackendKind, options: dict[str, Any], *, given: set[str]
) -> None:
    """Refuse a dtype or quantize value the torch loader would only reject at load time."""
    if options.get("kind") is ModelKind.EMBEDDING:
        for name in sorted(given & {"quantize", "max_batch_size"}):
            # The encoder backend has its own loader and LLMSERVER_EMBEDDING_BATCH_ROWS.
            raise ModelConfigError(f"{where}: field '{name}' applies to chat models only")
    dtype, quantize = options["dtype"], options["quantize"]
    for name, value, choices in (("dtype", dtype, DTYPES), ("quantize", quantize, QUANTIZE_MODES)):
        if value is not None and value not in choices:
            raise ModelConfigError(
                f"{where}: field '{name}' must be one of {', '.join(choices)}, not {value!r}"
            )
        if value is not None and backend is not BackendKind.TORCH:
            # An MLX model is quantised when converted (mlx_lm.convert -q); http is remote.
            raise ModelConfigError(
                f"{where}: field '{name}' applies to backend 'torch' only, not {backend.value!r}"
            )
    if quantize == "int8" and dtype not in (None, "auto", "float32"):
        raise ModelConfigError(
            f"{where}: field 'quantize' = 'int8' runs float32 activations, so 'dtype' must be "
            f"auto or float32, not {dtype!r}"
        )
    if quantize == "int8" and options["device"] not in (None, "auto", "cpu"):
        raise ModelConfigError(
            f"{where}: field 'quantize' = 'int8' runs on CPU only, not device {options['device']!r}"
        )


def _defaults(where: str, raw: Any) -> ModelDefaults:
    if not isinstance(raw, dict):
        raise ModelConfigError(f"{where}: field 'defaults' must be a table")
    unknown = set(raw) - {"max_tokens", "temperature", "top_p"}
    if unknown:
        raise ModelConfigError(f"{where}: unknown fields in 'defaults': {sorted(unknown)}")
    max_tokens = raw.get("max_tokens", _DEFAULTS.max_tokens)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise ModelConfigError(f"{where}: field 'defaults.max_tokens' must be a positive integer")
    numbers: dict[str, float] = {}
    for name, low, high in (("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0)):
        value = raw.get(name, getattr(_DEFAULTS, name))
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not low <= value <= high
        ):
            raise ModelConfigError(
                f"{where}: field 'defaults.{name}' must be a number from {low:g} to {high:g}"
            )
        numbers[name] = float(value)
    return ModelDefaults(max_tokens=max_tokens, **numbers)
