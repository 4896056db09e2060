"""The demo embedding model: a random-weight BERT encoder on the demo tokenizer.

Built by ``build_demo_model`` into the demo model's ``embedding`` folder
(``registry.DEMO_EMBEDDING_SUBDIR``), so the demo profile serves an embedding model beside
its chat model with nothing more to build or configure. Its vectors are random
projections of the tokens (similar texts still land close, through the shared tokens
that mean pooling averages); real vectors come from real weights, such as the
``embeddings-minilm`` extra's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast


@dataclass(frozen=True, slots=True)
class EncoderShape:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    max_position_embeddings: int


ENCODER_SHAPES = {
    "tiny": EncoderShape(64, 128, 2, 4, 512),
    "bench": EncoderShape(384, 1536, 6, 12, 512),
}


def save_demo_encoder(
    target: Path, shape: EncoderShape, tokenizer: PreTrainedTokenizerFast, *, seed: int
) -> int:
    """Save the encoder and its tokenizer into ``target``; returns its parameter count."""
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        max_position_embeddings=shape.max_position_embeddings,
        pad_token_id=int(tokenizer.pad_token_id or 0),
        dtype="float32",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    return sum(p.numel() for p in model.parameters())
