"""Plain transformers measurements: the baselines every inference target is a ratio of."""

from __future__ import annotations

import time
from typing import Any


class RawModel:
    """``model.generate`` and a bare prefill on the same weights, greedy."""

    def __init__(self, model: Any, tokenizer: Any, new_tokens: int) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.new_tokens = new_tokens

    def single(self, ids: list[int]) -> float:
        """Tokens per second of one greedy ``generate``."""
        import torch

        tensor = torch.tensor([ids])
        started = time.perf_counter()
        out = self.model.generate(tensor, max_new_tokens=self.new_tokens, do_sample=False)
        return float(out.shape[1] - tensor.shape[1]) / (time.perf_counter() - started)

    def batch(self, ids: list[list[int]]) -> float:
        """Aggregate tokens per second of one left-padded batched ``generate``."""
        self.tokenizer.padding_side = "left"
        batch = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt")
        started = time.perf_counter()
        out = self.model.generate(
            **batch,
            max_new_tokens=self.new_tokens,
            min_new_tokens=self.new_tokens,
            do_sample=False,
        )
        generated = (out.shape[1] - batch["input_ids"].shape[1]) * len(ids)
        return float(generated) / (time.perf_counter() - started)

    def prefill(self, ids: list[int]) -> float:
        """Seconds for the forward pass over the prompt that yields the first token."""
        import torch
        from transformers import DynamicCache

        tensor = torch.tensor([ids])
        with torch.inference_mode():
            started = time.perf_counter()
            self.model(
                input_ids=tensor, cache=DynamicCache(config=self.model.config), logits_to_keep=1
            )
            return time.perf_counter() - started
