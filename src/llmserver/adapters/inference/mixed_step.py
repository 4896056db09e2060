"""A decode step and a prefill chunk in one forward pass (vLLM's mixed batch).

On a CPU a forward pass of a small model is bound by reading its weights: a 16-token
chunk costs about what a decode step of 8 rows costs. Run one after the other, they
double the running rows' gap between tokens; run as one pass, the weights are read once.

The pass packs the tokens into a single sequence: the running rows' next tokens (one
each), then the prompt chunk, each with its own position. Every layer's projections and
MLP run on the packed tokens at once. Attention cannot: the running rows share one
left-padded cache and the prompt has a cache of its own. So the pass runs with its own
cache object, which writes each part's keys and values into its cache, and an attention
function of ours, which then runs the two parts against their caches separately, with
the masks the plain decode and chunk passes would build. Outside a mixed pass that
function is transformers' SDPA attention, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from llmserver.adapters.inference.kv_cache import Batch, can_preload

MIXED_SDPA = "llmserver_mixed_sdpa"


@dataclass(frozen=True, slots=True)
class _Masks:
    rows: int
    decode: torch.Tensor | None
    chunk: torch.Tensor | None


@dataclass(frozen=True, slots=True)
class _Split:
    """One layer's keys (or values) of a mixed pass: the running rows' and the chunk's,
    with the masks to run them under (the model hands attention no mask of ours)."""

    decode: torch.Tensor
    chunk: torch.Tensor
    masks: _Masks


class _MixedCache:
    """The cache a mixed pass runs with: routes each layer's new keys and values."""

    def __init__(self, batch_cache: Any, chunk_cache: Any, masks: _Masks) -> None:
        self._batch = batch_cache
        self._chunk = chunk_cache
        self.masks = masks

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, **_: Any
    ) -> tuple[_Split, _Split]:
        rows = self.masks.rows
        # [1, heads, rows, dim] -> [rows, heads, 1, dim]: one new token per running row.
        keys, values = self._batch.layers[layer_idx].update(
            key_states[:, :, :rows].transpose(0, 2), value_states[:, :, :rows].transpose(0, 2)
        )
        chunk_keys, chunk_values = self._chunk.layers[layer_idx].update(
            key_states[:, :, rows:], value_states[:, :, rows:]
        )
        masks = self.masks
        return _Split(keys, chunk_keys, masks), _Split(values, chunk_values, masks)


def _attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor | _Split,
    value: torch.Tensor | _Split,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    if isinstance(key, torch.Tensor) and isinstance(value, torch.Tensor):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    assert isinstance(key, _Split)
    assert isinstance(value, _Split)
    masks = key.masks
    rows = masks.rows
    decoded, _ = sdpa_attention_forward(
        module,
        query[:, :, :rows].transpose(0, 2),
        key.decode,
        value.decode,
        masks.decode,
        **kwargs,
    )
    chunked, _ = sdpa_attention_forward(
        module, query[:, :, rows:], key.chunk, value.chunk, masks.chunk, **kwargs
    )
    # Both come back [batch, tokens, heads, dim]; the pass wants the packed sequence.
    return torch.cat([decoded.transpose(0, 1), chunked], dim=1), None


AttentionInterface.register(MIXED_SDPA, _attention)
# Its masks outside a mixed pass are SDPA's own, so those passes compute what SDPA does.
ALL_MASK_ATTENTION_FUNCTIONS.register(MIXED_SDPA, sdpa_mask)


def enable(model: Any) -> bool:
    """Switch ``model`` to the attention that mixed passes need; False where it cannot
    take them (another attention than SDPA, or sliding-window layers, whose cache keeps
    only its window)."""
    config = model.config
    if getattr(config, "_attn_implementation", None) not in ("sdpa", MIXED_SDPA):
        return False
    if not can_preload(config):
        return False
    model.set_attn_implementation(MIXED_SDPA)
    return True


@dataclass(slots=True)
class Chunk:
    """The next prompt tokens of one prefilling row: ``ids`` go at ``start`` of ``cache``."""

    ids: list[int]
    start: int
    cache: Any


def decode_pass(
    model: Any,
    batch: Batch[Any],
    tokens: list[int],
    positions: list[int],
    chunk: Chunk | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One decode step of ``batch`` (each row's next token and its position), with
    ``chunk`` riding along: each row's next-token logits, and the logits after the
    chunk (an empty tensor without one)."""
    assert batch.mask is not None
    batch.mask = mask = torch.cat([batch.mask, batch.mask.new_ones((len(tokens), 1))], dim=1)
    cache, device = batch.cache, mask.device
    if chunk is None:
        out = model(
            input_ids=torch.tensor([[t] for t in tokens], device=device),
            attention_mask=mask,
            position_ids=torch.tensor([[p] for p in positions], device=device),
            cache=cache,
            use_cache=True,
        )
        logits = out.logits[:, -1, :]
        return logits, logits[:0]
    rows, width = len(tokens), len(chunk.ids)
    end = chunk.start + width
    # The masks the plain passes get: none where nothing is hidden (SDPA skips it then);
    # a chunk after earlier tokens sees them all and itself causally.
    decode_mask = None if bool(mask.all()) else mask.bool()[:, None, None, :]
    chunk_mask = None
    if chunk.start > 0:
        seen = torch.arange(end, device=device)
        chunk_mask = (seen[None, :] <= seen[chunk.start :, None])[None, None]
    out = model(
        input_ids=torch.tensor([tokens + chunk.ids], device=device),
        # A 4D mask is taken as built, so the model builds none; attention reads ours.
        attention_mask=torch.ones((1, 1, 1, 1), dtype=torch.bool, device=device),
        position_ids=torch.tensor([positions + list(range(chunk.start, end))], device=device),
        cache=_MixedCache(cache, chunk.cache, _Masks(rows, decode_mask, chunk_mask)),
        use_cache=True,
        logits_to_keep=torch.tensor([*range(rows), rows + width - 1], device=device),
    )
    mixed: torch.Tensor = out.logits[0]
    return mixed[:rows], mixed[rows:]
