"""Loading a transformers causal LM for the torch backend: device, dtype, weights, EOS ids.

``quantize = "int8"`` is torch's dynamic int8 for linear layers (weights stored int8 per
channel, activations quantised on the fly, fbgemm kernels, float32 in between). In a
one-off probe on the 98M bench model (one thread, best of 100 decode steps; not kept),
it decoded a token ~4x faster than float32, ahead of weight-only int8 with bfloat16
activations (``torch._weight_int8pack_mm``, ~2.6x) and of bfloat16 (~1.5x);
``make bench`` measures it against float32 and bfloat16 (bench/results/quantize.md).
The activation scale is one per step over every row in it, so an int8 row's output
depends a little on its batch-mates; float32 rows' do not (nor would weight-only int8's,
the slower kind above: the way to take if that ever matters more than speed).
``torch.ao.quantization`` is deprecated in favour of torchao but still ships in torch
2.13 and needs no extra dependency: its deprecation warnings are silenced where it is
called, and a torch without it fails the load with a clear message.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llmserver.domain.registry import QUANTIZE_MODES, ModelSpec

log = logging.getLogger(__name__)

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


def resolve_dtype(requested: str, device: torch.device, *, model_id: str) -> torch.dtype:
    if requested == "auto":
        # float16 is slow or unsupported for many CPU kernels, and bfloat16 did not win
        # at every batch size in `make bench` (bench/results/quantize.md): an opt-in.
        return torch.float32 if device.type == "cpu" else torch.float16
    if requested not in _DTYPES:
        raise RuntimeError(f"unknown dtype {requested!r}; use auto, {', '.join(_DTYPES)}")
    if requested == "bfloat16" and device.type == "cpu" and not cpu_has_bfloat16():
        # Emulated bfloat16 still computes, but slower than float32: the option was asked
        # for speed, so float32 serves its purpose better than an error would.
        log.warning(
            "model %s: dtype 'bfloat16' asked for, but this CPU has no native bfloat16 "
            "(AVX512_BF16 or AMX); loading float32 instead",
            model_id,
        )
        return torch.float32
    return _DTYPES[requested]


def cpu_has_bfloat16() -> bool:
    """Whether oneDNN runs bfloat16 natively here (AVX512_BF16 / AMX), not emulated."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def quantize_int8(model: Any) -> Any:
    """Dynamic int8 linear layers (torch.ao), in place of the float32 ones."""
    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError as exc:  # removed from a future torch: torchao replaces it
        raise RuntimeError(
            f"quantize 'int8' needs torch.ao.quantization, which torch {torch.__version__} "
            "no longer has; use quantize 'none'"
        ) from exc
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "torch.ao.quantization is deprecated")
        warnings.filterwarnings("ignore", "torch.quantize_per_tensor, torch.quantize_per_channel")
        # Per output channel scales: one outlier row does not coarsen every other row.
        spec = {torch.nn.Linear: per_channel_dynamic_qconfig}
        return quantize_dynamic(model, spec, dtype=torch.qint8)  # type: ignore[no-untyped-call]


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
    dtype = resolve_dtype(spec.dtype, device, model_id=spec.id)
    if spec.quantize == "int8" and (device.type != "cpu" or dtype != torch.float32):
        raise RuntimeError(
            f"model {spec.id!r}: quantize 'int8' runs on CPU in float32 only, but device "
            f"{spec.device!r} / dtype {spec.dtype!r} resolved to {device} / {dtype}"
        )
    if spec.quantize not in QUANTIZE_MODES:
        raise RuntimeError(
            f"model {spec.id!r}: unknown quantize {spec.quantize!r}; "
            f"use {', '.join(QUANTIZE_MODES)}"
        )
    hub_args: dict[str, Any] = {} if Path(spec.source).is_dir() else {"revision": spec.revision}
    tokenizer: Any = AutoTokenizer.from_pretrained(spec.source, **hub_args)
    model: Any = AutoModelForCausalLM.from_pretrained(
        spec.source, dtype=dtype, attn_implementation="sdpa", **hub_args
    )
    configured = getattr(model.generation_config, "eos_token_id", None)
    eos = [*configured] if isinstance(configured, list) else [configured]
    eos.append(tokenizer.eos_token_id)
    model = model.to(device).eval()
    if spec.quantize == "int8":
        model = quantize_int8(model)
    return LoadedModel(
        tokenizer=tokenizer,
        model=model,
        device=device,
        dtype=dtype,
        eos=frozenset(int(i) for i in eos if i is not None),
    )
