"""The torch backend's KV cache: one left-padded cache shared by a batch's rows.

Rows join a batch with their own prefilled cache (the shorter one left-padded with
masked zeros) and leave it between decode steps (cache columns that only padding uses
are trimmed then). Full-attention layers keep free room after their tokens, so a decode
step writes in place instead of copying the whole cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

Row = TypeVar("Row")


class Batch(Generic[Row]):
    """The active rows and their shared, left-padded KV cache."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.cache: Any = None
        self.mask: torch.Tensor | None = None

    def join(self, other: Batch[Row]) -> None:
        """Take in ``other``'s rows, left-padding the shorter cache with masked zeros."""
        if other.mask is None:
            return
        if self.mask is None:
            self.rows, self.cache, self.mask = other.rows, other.cache, other.mask
            return
        width = max(self.mask.shape[1], other.mask.shape[1])
        for mine, theirs in zip(self.cache.layers, other.cache.layers, strict=True):
            mine.keys = torch.cat([left_pad(mine.keys, width), left_pad(theirs.keys, width)])
            mine.values = torch.cat([left_pad(mine.values, width), left_pad(theirs.values, width)])
        self.mask = torch.cat(
            [left_pad(self.mask, width, dim=1), left_pad(other.mask, width, dim=1)]
        )
        self.rows = [*self.rows, *other.rows]

    def fan_out(self, copies: list[list[Row]]) -> torch.Tensor:
        """Row ``i`` becomes the rows ``copies[i]``, each with a copy of its cache (the
        choices of one prompt, prefilled once); the index that maps old rows to new, for
        whatever else is kept per row (their logits)."""
        assert self.mask is not None
        index = torch.tensor(
            [i for i, rows in enumerate(copies) for _ in rows], device=self.mask.device
        )
        self.rows = [row for rows in copies for row in rows]
        self.mask = self.mask[index]
        for layer in self.cache.layers:
            layer.keys = layer.keys[index]
            layer.values = layer.values[index]
        return index

    def keep(self, keep: list[int]) -> None:
        if not keep:
            self.rows, self.cache, self.mask = [], None, None
            return
        if len(keep) == len(self.rows) or self.mask is None:
            return
        index = torch.tensor(keep, device=self.mask.device)
        self.rows = [self.rows[i] for i in keep]
        self.mask = self.mask[index]
        trim = int((self.mask.sum(dim=0) == 0).sum())  # leading all-padding columns
        self.mask = self.mask[:, trim:]
        for layer in self.cache.layers:
            layer.keys = layer.keys[index, :, trim:]
            layer.values = layer.values[index, :, trim:]


class RoomyLayer(DynamicLayer):  # type: ignore[no-untyped-call]
    """A ``DynamicLayer`` that keeps free room after its tokens, so a step writes in place.

    ``DynamicLayer`` concatenates on every update, copying the whole cache each decode
    step; that copy grows with rows x length (bench model, 8 rows x 45 tokens, one
    thread: 74 us per tensor against 4 us in place, ~1.7 ms of each step). Here the
    tokens sit at the front of a buffer that doubles when full, up to ``limit`` (the
    context length: no row, so no left-padded batch, is longer); its first one holds at
    least ``room`` tokens (a prompt prefilled in chunks: its length, so that no chunk's
    step also copies the whole cache into a new buffer). ``keys``/``values``
    are views of the used part; assigning a tensor to them (as ``Batch`` does to pad,
    select or trim rows) adopts it as the new, full buffer.
    """

    def __init__(self, limit: int, room: int = 0) -> None:
        self._limit = limit
        self._room = room
        self._buffers: dict[str, tuple[torch.Tensor, int] | None] = {"keys": None, "values": None}
        super().__init__()  # type: ignore[no-untyped-call]

    def _used(self, name: str) -> torch.Tensor | None:
        held = self._buffers[name]
        return None if held is None else held[0][:, :, : held[1]]

    def _adopt(self, name: str, tensor: torch.Tensor | None) -> None:
        self._buffers[name] = None if tensor is None else (tensor, tensor.shape[-2])

    @property
    def keys(self) -> torch.Tensor | None:
        return self._used("keys")

    @keys.setter
    def keys(self, tensor: torch.Tensor | None) -> None:
        self._adopt("keys", tensor)

    @property
    def values(self) -> torch.Tensor | None:
        return self._used("values")

    @values.setter
    def values(self, tensor: torch.Tensor | None) -> None:
        self._adopt("values", tensor)

    def preload(
        self, keys: Sequence[torch.Tensor], values: Sequence[torch.Tensor], *, room: int
    ) -> None:
        """Start from a copy of ``keys``/``values`` (a cached prefix's blocks in order, each
        ``[kv_heads, tokens, head_dim]``), as one row with room for ``room`` tokens."""
        length = sum(k.shape[1] for k in keys)
        for name, parts in (("keys", keys), ("values", values)):
            heads, _, dim = parts[0].shape
            buffer = parts[0].new_empty((1, heads, min(max(room, length), self._limit), dim))
            start = 0
            for part in parts:
                buffer[0, :, start : start + part.shape[1]] = part
                start += part.shape[1]
            self._buffers[name] = (buffer, length)
        self.device = keys[0].device
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        return self._append("keys", key_states), self._append("values", value_states)

    def _append(self, name: str, states: torch.Tensor) -> torch.Tensor:
        held = self._buffers[name]
        buffer, length = (None, 0) if held is None else held
        end = length + states.shape[-2]
        if buffer is None or buffer.shape[-2] < end:
            shape = list(states.shape)
            shape[-2] = max(end, min(max(2 * end, self._room), self._limit))
            grown = states.new_empty(shape)
            if buffer is not None:
                grown[:, :, :length] = buffer[:, :, :length]
            buffer = grown
        buffer[:, :, length:end] = states
        self._buffers[name] = (buffer, end)
        return buffer[:, :, :end]


def new_cache(config: Any, limit: int, room: int = 0) -> Any:
    """A ``DynamicCache`` whose full-attention layers are ``RoomyLayer``s."""
    cache = DynamicCache(config=config)
    cache.layers = [
        RoomyLayer(limit, room) if type(layer) is DynamicLayer else layer for layer in cache.layers
    ]
    return cache


def can_preload(config: Any) -> bool:
    """Whether every layer of ``new_cache(config)`` can start from a cached prefix (a
    sliding-window layer cannot: it keeps only its window)."""
    return all(isinstance(layer, RoomyLayer) for layer in new_cache(config, 1).layers)


def prefill(
    model: Any,
    rows: list[Row],
    prompts: Sequence[list[int]],
    *,
    pad: int,
    limit: int,
    device: torch.device,
) -> tuple[Batch[Row], torch.Tensor]:
    """``rows``' prompts (``prompts``, in the same order) through ``model`` together,
    left-padded to the longest: the rows as a batch with their new cache (room up to
    ``limit`` tokens), and each row's next-token logits."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    group: Batch[Row] = Batch()
    group.rows, group.cache, group.mask = rows, new_cache(model.config, limit), mask
    # A lone prompt runs without mask or positions: exactly what ``generate`` runs.
    padded = (
        {}
        if len(rows) == 1
        else {"attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}
    )
    out = model(input_ids=ids, cache=group.cache, use_cache=True, logits_to_keep=1, **padded)
    return group, out.logits[:, -1, :]


def left_pad(t: torch.Tensor, width: int, dim: int = 2) -> torch.Tensor:
    missing = width - t.shape[dim]
    if missing == 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)
