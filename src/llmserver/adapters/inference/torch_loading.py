"""Loading a transformers causal LM for the torch backend: device, dtype, weights, EOS ids."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llmserver.domain.registry import ModelSpec

_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def resolve_device(requested: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit choice must be available."""
    mps = getattr(torch.backends, "mps", None)
    mps_ok = mps is not None and bool(mps.is_available())
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_ok else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {requested!r} was requested but CUDA is not available to this torch "
            f"build ({torch.__version__}); use device 'cpu' or 'auto'"
        )
    if requested == "mps" and not mps_ok:
        raise RuntimeError("device 'mps' was requested but MPS is not available here")
    if requested not in {"cpu", "mps"} and not requested.startswith("cuda"):
        raise RuntimeError(f"unknown device {requested!r}; use auto, cpu, cuda or mps")
    return torch.device(requested)


def resolve_dtype(requested: str, device: torch.device) -> torch.dtype:
    if requested == "auto":
        # Half precision is slow or unsupported for many CPU kernels.
        return torch.float32 if device.type == "cpu" else torch.float16
    if requested not in _DTYPES:
        raise RuntimeError(f"unknown dtype {requested!r}; use auto, {', '.join(_DTYPES)}")
    return _DTYPES[requested]


@dataclass(frozen=True)
class LoadedModel:
    tokenizer: Any
    model: Any
    """In eval mode, on ``device``."""
    device: torch.device
    dtype: torch.dtype
    eos: frozenset[int]
    """Every token id that ends a generation (the generation config's and the tokenizer's)."""


def load_model(spec: ModelSpec) -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    hub_args: dict[str, Any] = {} if Path(spec.source).is_dir() else {"revision": spec.revision}
    tokenizer: Any = AutoTokenizer.from_pretrained(spec.source, **hub_args)
    model: Any = AutoModelForCausalLM.from_pretrained(
        spec.source, dtype=dtype, attn_implementation="sdpa", **hub_args
    )
    configured = getattr(model.generation_config, "eos_token_id", None)
    eos = [*configured] if isinstance(configured, list) else [configured]
    eos.append(tokenizer.eos_token_id)
    return LoadedModel(
        tokenizer=tokenizer,
        model=model.to(device).eval(),
        device=device,
        dtype=dtype,
        eos=frozenset(int(i) for i in eos if i is not None),
    )
