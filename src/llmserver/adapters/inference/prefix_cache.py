"""Automatic prefix caching: the KV cache of a prompt's leading blocks, kept for the next
prompt that starts the same way (a chat's system prompt, its earlier turns).

A prompt is cut into blocks of ``block_tokens`` tokens. Each block is keyed by a digest
chained over every block before it, as vLLM's automatic prefix caching does, so one key
names the whole prefix up to its block's end: a block matches only where everything
before it matched too, which is also what makes its keys valid (they carry rotary
positions counted from the prompt's first token).

Safety across the rows of a batch comes from ownership, not pinning: a block's tensors
are copied in when a row's prefill completes and copied out into a new row's own cache
at admission, and nothing ever writes to them. A running row therefore never reads a
block, so evicting one cannot change any row's output. Blocks are evicted least recently
used first, and a chain is touched from its last block to its first, so a shared root
(the system prompt) outlives the branches that hang off it.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from llmserver.domain.inference import PrefixCacheStats

BLOCK_TOKENS = 16
"""vLLM's default block size: short system prompts still fill a block or more, and a
miss re-prefills at most 15 tokens of a shared prefix."""


@dataclass(frozen=True, slots=True)
class Block:
    keys: tuple[torch.Tensor, ...]
    """Per layer, ``[kv_heads, block_tokens, head_dim]``; never written after storing."""
    values: tuple[torch.Tensor, ...]
    nbytes: int


class PrefixCache:
    """Blocks of prompt KV cache by chained digest, LRU within ``budget_bytes``.

    Used only from the model's worker thread, so it takes no lock.
    """

    def __init__(self, budget_bytes: int, *, block_tokens: int = BLOCK_TOKENS) -> None:
        self.budget_bytes = budget_bytes
        self.block_tokens = block_tokens
        self._blocks: collections.OrderedDict[bytes, Block] = collections.OrderedDict()
        self._bytes = 0
        self._hit_tokens = 0
        self._evictions = 0

    def stats(self) -> PrefixCacheStats:
        return PrefixCacheStats(
            hit_tokens=self._hit_tokens,
            evictions=self._evictions,
            blocks=len(self._blocks),
            bytes=self._bytes,
            budget_bytes=self.budget_bytes,
        )

    def digests(self, ids: Sequence[int]) -> list[bytes]:
        """One chained digest per full block of ``ids``."""
        size = self.block_tokens
        out: list[bytes] = []
        previous = b""
        for start in range(0, len(ids) - size + 1, size):
            block = b"".join(i.to_bytes(4, "little") for i in ids[start : start + size])
            previous = hashlib.blake2b(previous + block, digest_size=16).digest()
            out.append(previous)
        return out

    def match(self, ids: Sequence[int]) -> list[Block]:
        """The cached blocks that start ``ids``, leaving at least its last token to run
        (its logits give the first new token); counted as hit tokens."""
        found: list[tuple[bytes, Block]] = []
        for digest in self.digests(ids[:-1]):
            block = self._blocks.get(digest)
            if block is None:
                break
            found.append((digest, block))
        self._touch([digest for digest, _ in found])
        self._hit_tokens += len(found) * self.block_tokens
        return [block for _, block in found]

    def store(
        self, ids: Sequence[int], keys: Sequence[torch.Tensor], values: Sequence[torch.Tensor]
    ) -> None:
        """Keep the full blocks of ``ids`` not cached yet. ``keys``/``values``: per layer,
        the prompt's states ``[kv_heads, len(ids), head_dim]`` (views: blocks copy them)."""
        digests = self.digests(ids)
        size = self.block_tokens
        for n, digest in enumerate(digests):
            if digest in self._blocks:
                continue
            span = slice(n * size, (n + 1) * size)
            nbytes = sum(2 * k[:, span].numel() * k.element_size() for k in keys)
            if not self._make_room(nbytes, keep=digests):
                break
            self._blocks[digest] = Block(
                keys=tuple(k[:, span].clone() for k in keys),
                values=tuple(v[:, span].clone() for v in values),
                nbytes=nbytes,
            )
            self._bytes += nbytes
        self._touch(digests)

    def _touch(self, chain: list[bytes]) -> None:
        for digest in reversed(chain):
            if digest in self._blocks:
                self._blocks.move_to_end(digest)

    def _make_room(self, nbytes: int, *, keep: list[bytes]) -> bool:
        """Evict least recently used blocks until ``nbytes`` fit; never the chain being
        stored (its earlier blocks are its own prefix). False when they cannot fit."""
        protected = set(keep)
        if nbytes + sum(self._blocks[d].nbytes for d in protected if d in self._blocks) > (
            self.budget_bytes
        ):
            return False
        while self._bytes + nbytes > self.budget_bytes:
            victim = next(d for d in self._blocks if d not in protected)
            self._bytes -= self._blocks.pop(victim).nbytes
            self._evictions += 1
        return True
