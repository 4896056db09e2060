"""The prefix cache's bookkeeping: chained keys, what a match may cover, LRU within the
byte budget, and blocks that nobody can write to."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import torch

from llmserver.adapters.inference.prefix_cache import PrefixCache

LAYERS, HEADS, DIM, BLOCK = 2, 2, 4, 4
BLOCK_BYTES = LAYERS * 2 * HEADS * BLOCK * DIM * 4  # float32 keys and values


def states(ids: list[int]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per layer, states that encode each token's id and position, so a block's origin shows."""
    position = torch.arange(len(ids), dtype=torch.float32)
    token = torch.tensor(ids, dtype=torch.float32)
    base = (token * 1000 + position)[None, :, None].expand(HEADS, len(ids), DIM)
    return [base + layer for layer in range(LAYERS)], [-base - layer for layer in range(LAYERS)]


def cache(blocks: int) -> PrefixCache:
    return PrefixCache(blocks * BLOCK_BYTES, block_tokens=BLOCK)


def store(prefix: PrefixCache, ids: list[int]) -> None:
    prefix.store(ids, *states(ids))


def test_a_block_matches_only_after_the_same_prefix() -> None:
    prefix = cache(16)
    store(prefix, [1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert len(prefix.match([1, 2, 3, 4, 5, 6, 7, 8, 0, 0])) == 2
    # The same second block after a different first one is another prefix.
    assert prefix.match([9, 9, 9, 9, 5, 6, 7, 8, 0]) == []
    assert len(prefix.match([1, 2, 3, 4, 0, 6, 7, 8, 0])) == 1
    assert prefix.stats().hit_tokens == 2 * BLOCK + BLOCK


def test_a_match_leaves_the_last_token_to_compute() -> None:
    prefix = cache(16)
    ids = list(range(1, 9))  # exactly two blocks
    store(prefix, ids)
    assert prefix.stats().blocks == 2
    assert len(prefix.match(ids)) == 1
    assert len(prefix.match([*ids, 42])) == 2


def test_matched_blocks_hold_the_prompts_states() -> None:
    prefix = cache(16)
    ids = [5, 6, 7, 8, 9, 10, 11, 12, 13]
    keys, values = states(ids)
    prefix.store(ids, keys, values)
    blocks = prefix.match(ids)
    for layer in range(LAYERS):
        got_keys = torch.cat([b.keys[layer] for b in blocks], dim=1)
        got_values = torch.cat([b.values[layer] for b in blocks], dim=1)
        assert torch.equal(got_keys, keys[layer][:, : 2 * BLOCK])
        assert torch.equal(got_values, values[layer][:, : 2 * BLOCK])


def test_stored_blocks_are_copies() -> None:
    prefix = cache(16)
    ids = [1, 2, 3, 4, 5]
    keys, values = states(ids)
    keys = [k.clone() for k in keys]
    prefix.store(ids, keys, values)
    keys[0].zero_()  # the row's own cache goes on being written
    (block,) = prefix.match(ids)
    assert torch.equal(block.keys[0], states(ids)[0][0][:, :BLOCK])


def test_lru_evicts_branches_before_their_shared_root() -> None:
    prefix = cache(3)
    root = [1, 1, 1, 1]
    store(prefix, [*root, 2, 2, 2, 2, 0])  # root + branch a
    store(prefix, [*root, 3, 3, 3, 3, 0])  # root + branch b: full
    assert prefix.stats().evictions == 0
    store(prefix, [*root, 4, 4, 4, 4, 0])  # evicts branch a, not the root used since
    assert prefix.stats().evictions == 1
    assert len(prefix.match([*root, 2, 2, 2, 2, 0])) == 1
    assert len(prefix.match([*root, 3, 3, 3, 3, 0])) == 2
    assert len(prefix.match([*root, 4, 4, 4, 4, 0])) == 2


def test_the_budget_is_never_exceeded() -> None:
    prefix = cache(3)
    store(prefix, list(range(100, 120)))  # five blocks: the first three fit, in order
    held = prefix.stats()
    assert held.blocks == 3
    assert held.bytes == 3 * BLOCK_BYTES <= held.budget_bytes
    assert len(prefix.match(list(range(100, 120)))) == 3
    for start in range(0, 400, 8):
        store(prefix, list(range(start, start + 9)))
        assert prefix.stats().bytes <= prefix.stats().budget_bytes
    assert prefix.stats().evictions > 0


def test_a_budget_below_one_block_keeps_nothing() -> None:
    prefix = PrefixCache(BLOCK_BYTES - 1, block_tokens=BLOCK)
    store(prefix, list(range(9)))
    assert prefix.stats().blocks == 0
    assert prefix.match(list(range(9))) == []
