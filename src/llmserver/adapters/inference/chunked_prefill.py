"""Prefill in bounded steps, so that a long prompt cannot stall the rows decoding.

While rows are decoding, a forward pass computes at most ``chunk_tokens`` tokens
(counting padding; with no row decoding, whole prompts). A chunk of one prompt rides
in the decode step's own forward pass where the model allows it (``mixed_step``, see
``riding``), beside one token per decoding row, and those count: the chunk gets what the
rows leave of ``chunk_tokens``, but at least half of it. Otherwise the worker alternates
one prefill step with one decode step. A step is either a group of
new short prompts together, left-padded (as ``generate`` does for a batch; a lone one
unpadded, exactly what ``generate`` computes), or the next chunk of one prompt into that
row's own cache. A row whose prompt starts with cached blocks (``PrefixCache``) begins
with a copy of them and computes only the rest, in chunks. A completed row's full blocks
go into the prefix cache, and it leaves as a batch of its own to join the running one.
"""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic

import torch

from llmserver.adapters.inference import mixed_step
from llmserver.adapters.inference.kv_cache import Batch, Row, can_preload, new_cache, prefill
from llmserver.adapters.inference.mixed_step import Chunk
from llmserver.adapters.inference.prefix_cache import PrefixCache

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class _Pending(Generic[Row]):
    row: Row
    ids: list[int]
    cache: Any = None
    """The row's own cache once a chunk (or a prefix-cache hit) has filled it."""
    done: int = 0
    """Prompt tokens already in ``cache``."""
    alone: bool = False
    """Its group's forward pass failed: it runs by itself, so only its own failure is its."""


class PrefillFailed(Exception):
    """A prefill step's forward pass failed; ``rows`` are the requests it computed."""

    def __init__(self, rows: list[Any]) -> None:
        super().__init__(f"prefill of {len(rows)} rows failed")
        self.rows = rows


class ChunkedPrefill(Generic[Row]):
    """Rows waiting for (the rest of) their prefill, first come first served."""

    def __init__(
        self,
        model: Any,
        *,
        chunk_tokens: int,
        limit: int,
        pad: int,
        device: torch.device,
        prefix_cache_bytes: int,
    ) -> None:
        self._model = model
        self.chunk_tokens = chunk_tokens
        self._limit = limit
        self._pad = pad
        self._device = device
        self.prefix_cache = (
            PrefixCache(prefix_cache_bytes)
            if prefix_cache_bytes > 0 and can_preload(model.config)
            else None
        )
        """``None`` when turned off (a budget of 0) or the model has sliding-window layers."""
        self._pending: collections.deque[_Pending[Row]] = collections.deque()
        self._mixed = mixed_step.enable(model)
        self.mixed_steps = 0
        """Chunks that rode in a decode step's forward pass (evidence that they do)."""

    @property
    def rows(self) -> list[Row]:
        return [p.row for p in self._pending]

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, row: Row, ids: list[int]) -> None:
        pending = _Pending(row, ids)
        if self.prefix_cache is not None:
            blocks = self.prefix_cache.match(ids)
            try:
                if blocks:
                    pending.cache = new_cache(self._model.config, self._limit)
                    for n, layer in enumerate(pending.cache.layers):
                        keys = [b.keys[n] for b in blocks]
                        layer.preload(keys, [b.values[n] for b in blocks], room=len(ids))
                    pending.done = len(blocks) * self.prefix_cache.block_tokens
            except Exception:
                # This runs outside the worker's error handling (out of memory, say): the
                # row computes its whole prompt instead.
                log.exception("prefix cache: copying %d blocks failed", len(blocks))
                pending.cache, pending.done = None, 0
        self._pending.append(pending)

    def remove(self, leaves: Callable[[Row], bool]) -> list[Row]:
        """Take out the rows ``leaves`` picks (gone, timed out); they are returned."""
        gone = [p for p in self._pending if leaves(p.row)]
        for pending in gone:
            self._pending.remove(pending)
        return [p.row for p in gone]

    def clear(self) -> list[Row]:
        rows = self.rows
        self._pending.clear()
        return rows

    def step(self, *, bounded: bool) -> tuple[Batch[Row], torch.Tensor] | None:
        """One step: the rows it completes as a batch, with each one's next-token logits,
        or ``None`` when it only advanced a long prompt. Raises ``PrefillFailed``.

        ``bounded``: rows are decoding, so the step computes at most ``chunk_tokens``.
        Otherwise nobody waits on it and chunks would only add forward passes (a small
        chunk costs about as much as a large one: both read every weight once).
        """
        budget = self.chunk_tokens if bounded else self._limit * len(self._pending)
        group = self._fresh_group(budget)
        if group:
            return self._prefill_group(group)
        return self._prefill_chunk(self._pending[0], budget)

    def riding(self, rows: int) -> Chunk | None:
        """The chunk to compute in the next decode step's pass, beside ``rows`` decoding
        rows, if the next bounded step is one row's (a group of new prompts runs as a pass
        of its own, left-padded); none without rows (nothing to ride in)."""
        if not (self._mixed and rows and self._pending):
            return None
        if len(self._fresh_group(self.chunk_tokens)) > 1:
            return None
        pending = self._pending[0]
        return self._next_chunk(pending, self.beside(rows, pending.done))

    def beside(self, rows: int, start: int) -> int:
        """Prompt tokens a chunk at ``start`` carries in a pass with ``rows`` decoding rows.

        The pass's cost follows all the tokens it carries, so the rows' count: the pass
        carries ``chunk_tokens`` in all (vLLM's token budget per step), the chunk at least
        half of them, so that a full batch cannot starve a prompt. Where the chunk sits
        counts too: its attention reads the cache of everything before it, so it shrinks
        with ``start``, to half at the end of the context window (``limit``).

        Measured on the bench model (one thread, MKL): the projections of a pass of 8-15
        tokens run a small-matrix path and cost up to 1.4x those of 7 rows alone, of
        16-24 tokens a packed one at 1.1x, so a chunk that fills 7 rows' pass to 16-24
        tokens costs little more than one of 4; late in a 2,000-token prompt, a pass of 7
        rows costs 1.5x their decode pass with 9 prompt tokens, 1.7x with 16. Passes of 7
        rows through a whole 2,000-token prompt (CPU time, runs of one setting at a time,
        two or four each): chunks of 16 all along, p99 1.83-1.99x the decode pass, 125
        passes; budget 24 (chunks of 17 shrinking to 9) 1.70-1.78x, 155 passes; budget 32
        (25 to 13) 1.76-2.02x, 107 passes.
        """
        budget = max(self.chunk_tokens - rows, (self.chunk_tokens + 1) // 2)
        return max(1, math.ceil(budget * (1 - start / (2 * self._limit))))

    def rode(self, chunk: Chunk, logits: torch.Tensor) -> tuple[Batch[Row], torch.Tensor] | None:
        """``chunk`` (from ``riding``) was computed; ``logits`` follow its last token. Like
        ``step``: the row as a batch with its next-token logits once its prompt is done."""
        self.mixed_steps += 1
        return self._advance(chunk, logits)

    def _fresh_group(self, budget: int) -> list[_Pending[Row]]:
        """The new prompts at the head of the queue that fit one step together."""
        group: list[_Pending[Row]] = []
        width = 0
        for pending in self._pending:
            fresh = pending.done == 0 and not pending.alone
            wider = max(width, len(pending.ids))
            if not fresh or wider * (len(group) + 1) > budget:
                break
            group.append(pending)
            width = wider
        return group

    def _prefill_group(self, group: list[_Pending[Row]]) -> tuple[Batch[Row], torch.Tensor]:
        rows = [p.row for p in group]
        try:
            batch, logits = prefill(
                self._model,
                rows,
                [p.ids for p in group],
                pad=self._pad,
                limit=self._limit,
                device=self._device,
            )
        except Exception as exc:
            if len(group) > 1:
                for pending in group:
                    pending.alone = True
                raise PrefillFailed([]) from exc
            self._pending.popleft()
            raise PrefillFailed(rows) from exc
        for _ in group:
            self._pending.popleft()
        assert batch.mask is not None
        width = batch.mask.shape[1]
        for i, pending in enumerate(group):
            self._remember(pending.ids, batch.cache, i, width - len(pending.ids))
        return batch, logits

    def _prefill_chunk(
        self, pending: _Pending[Row], budget: int
    ) -> tuple[Batch[Row], torch.Tensor] | None:
        chunk = self._next_chunk(pending, budget)
        ids = torch.tensor([chunk.ids], device=self._device)
        try:
            # No mask or positions: one unpadded row continues from its cache's length.
            out = self._model(input_ids=ids, cache=chunk.cache, use_cache=True, logits_to_keep=1)
        except Exception as exc:
            self._pending.popleft()
            raise PrefillFailed([pending.row]) from exc
        return self._advance(chunk, out.logits[:, -1, :])

    def _next_chunk(self, pending: _Pending[Row], budget: int) -> Chunk:
        if pending.cache is None:
            pending.cache = new_cache(self._model.config, self._limit, room=len(pending.ids))
        end = min(pending.done + budget, len(pending.ids))
        return Chunk(pending.ids[pending.done : end], pending.done, pending.cache)

    def _advance(
        self, chunk: Chunk, logits: torch.Tensor
    ) -> tuple[Batch[Row], torch.Tensor] | None:
        pending = self._pending[0]
        pending.done = end = chunk.start + len(chunk.ids)
        if end < len(pending.ids):
            return None
        self._pending.popleft()
        self._remember(pending.ids, pending.cache, 0, 0)
        batch: Batch[Row] = Batch()
        batch.rows, batch.cache = [pending.row], pending.cache
        batch.mask = torch.ones((1, end), dtype=torch.long, device=self._device)
        return batch, logits

    def _remember(self, ids: list[int], cache: Any, row: int, offset: int) -> None:
        if self.prefix_cache is None:
            return
        span = slice(offset, offset + len(ids))
        layers = cache.layers
        self.prefix_cache.store(
            ids,
            [layer.keys[row, :, span] for layer in layers],
            [layer.values[row, :, span] for layer in layers],
        )
