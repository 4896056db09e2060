"""The ports to loaded models: a model that generates, one that embeds, and the set of
loaded ones by model id (the composition root's ``MultiModelManager``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

from llmserver.domain.embeddings import EmbeddingInput, Embeddings
from llmserver.domain.inference import (
    BackendStatus,
    Completion,
    GenerationParams,
    Prompt,
    StreamEvent,
)


@runtime_checkable
class InferenceBackend(Protocol):
    """One loaded model. Implementations batch concurrent calls internally."""

    @property
    def model_id(self) -> str: ...

    async def count_tokens(self, prompt: Prompt) -> int:
        """Prompt tokens after the chat template, exactly as the model will see them.

        Backends that cannot tokenize (remote HTTP) return an upper bound.
        """
        ...

    def min_prompt_tokens(self, prompt: Prompt) -> int:
        """A lower bound on ``count_tokens``, from the prompt's length alone (0 if unknown).

        Cheap, so the gateway can refuse a prompt that cannot fit before it is tokenized.
        """
        ...

    async def generate(self, prompt: Prompt, params: GenerationParams) -> Completion: ...

    def stream(self, prompt: Prompt, params: GenerationParams) -> AsyncIterator[StreamEvent]:
        """Text and tool-call deltas in order, then exactly one StreamEnd (``TOOL_CALLS``
        when there were calls). Closing it early cancels."""
        ...

    def status(self) -> BackendStatus: ...

    async def close(self) -> None: ...


@runtime_checkable
class EmbeddingBackend(Protocol):
    """One loaded embedding model. Implementations batch concurrent calls internally."""

    @property
    def model_id(self) -> str: ...

    async def count_tokens(self, inputs: Sequence[EmbeddingInput]) -> list[int]:
        """Each input's tokens as the model will see them; backends that cannot tokenize
        (remote HTTP) return an upper bound."""
        ...

    async def embed(self, inputs: Sequence[EmbeddingInput], dimensions: int | None) -> Embeddings:
        """One vector per input, in order; ``InvalidRequest`` for what the model refuses
        (a token id outside its vocabulary, ``dimensions`` it cannot give)."""
        ...

    def status(self) -> BackendStatus: ...

    async def close(self) -> None: ...


class ModelBackends(Protocol):
    """The loaded backends, by model id (the MultiModelManager implements this)."""

    def backend(self, model_id: str) -> InferenceBackend:
        """The ready backend, or raise ``Unavailable`` naming the load error."""
        ...

    def embedder(self, model_id: str) -> EmbeddingBackend:
        """The ready embedding backend, or raise ``Unavailable`` naming the load error."""
        ...

    def statuses(self) -> Sequence[BackendStatus]: ...
