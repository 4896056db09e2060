"""One request as the torch backend's worker holds it: its prompt, sampling state, event
channel and place in the batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llmserver.adapters.inference.generation import EventChannel, TokenEvents
from llmserver.adapters.inference.grammar import RowGrammar
from llmserver.domain.inference import GenerationParams, StreamEvent
from llmserver.domain.tracing import Span


@dataclass(eq=False)
class TorchRequest:
    prompt_ids: list[int]
    params: GenerationParams
    channel: EventChannel
    events: TokenEvents
    deadline: float
    generator: torch.Generator | None
    grammar: RowGrammar | None
    """The output constraint's matcher; ``None`` for free text."""
    length: int = 0
    """Real (unpadded) tokens in this row's KV cache."""
    last_token: int = 0
    queued: Span | None = None
    """Its queue-wait span (tracing on): ended when the worker takes it, or when it leaves."""

    @property
    def gone(self) -> bool:
        return self.channel.cancelled

    def send(self, event: StreamEvent | BaseException) -> None:
        self.channel.send(event)
