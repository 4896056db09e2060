"""One request as the torch backend's worker holds it: its prompt, sampling state, event
channel and place in the batch; a request for ``n`` > 1 choices is a row per choice."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from llmserver.adapters.inference.generation import EventChannel, TokenEvents
from llmserver.adapters.inference.grammar import RowGrammar
from llmserver.domain.inference import GenerationParams, StreamEvent
from llmserver.domain.tracing import Span


@dataclass(eq=False)
class TorchRequest:
    """A request's row (its first choice's, when it asks for ``n`` > 1)."""

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
    choices: list[TorchRequest] = field(default_factory=list)
    """Its request's other choices (``n`` > 1): rows that start from a copy of this row's
    cache once its prefill is done."""

    @property
    def width(self) -> int:
        """The rows it takes in the batch."""
        return 1 + len(self.choices)

    @property
    def gone(self) -> bool:
        return self.channel.cancelled

    def send(self, event: StreamEvent | BaseException) -> None:
        self.channel.send(event)
