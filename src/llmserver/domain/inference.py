"""Value types shared by the gateway and every inference backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from llmserver.domain.output_constraint import OutputConstraint
from llmserver.domain.tools import ToolCall, ToolCallDelta, Tools


class FinishReason(StrEnum):
    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    """The answer calls tools (``Completion.tool_calls``)."""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    """An assistant message's calls."""
    tool_call_id: str | None = None
    """A ``tool`` message's: the call it answers."""


@dataclass(frozen=True, slots=True)
class Prompt:
    """Either a chat conversation (with the tools it offers the model) or a raw completion
    prompt, never both."""

    messages: tuple[ChatMessage, ...] | None = None
    text: str | None = None
    tools: Tools | None = None

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.text is None):
            raise ValueError("a Prompt holds exactly one of messages or text")
        if self.tools is not None and self.messages is None:
            raise ValueError("only a chat conversation offers tools")


SAMPLING_EPS = 1e-5
"""Temperatures below this are greedy (vLLM's ``_SAMPLING_EPS``, for the same reasons)."""


# Not frozen: built on every request's path (see ``RequestLog``).
@dataclass(slots=True)
class GenerationParams:
    """Sampling parameters after the model's defaults have been applied."""

    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    """Sample from the k likeliest tokens; ``None``: from all."""
    stop: tuple[str, ...] = ()
    seed: int | None = None
    constraint: OutputConstraint | None = None
    """The shape the text must have (a JSON schema, any JSON object); ``None``: free text."""

    @property
    def greedy(self) -> bool:
        """Whether a local model takes the most likely token at each step, not a sample.

        True for a temperature below ``SAMPLING_EPS``, not only 0: sampling divides the
        logits by the temperature, which overflows them to inf (and the probabilities to
        nan) for temperatures below about 1e-38, and well before that the division makes
        the most likely token all but certain anyway. An http model gets the temperature
        as sent; its server decides.
        """
        return self.temperature < SAMPLING_EPS


# Not frozen: built on every request's path (see ``RequestLog``).
@dataclass(slots=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    tool_calls: tuple[ToolCall, ...] = ()
    cached_tokens: int = 0
    """Of ``prompt_tokens``, those an upstream reports it read from its own prompt cache
    (billed at the model's ``cached_input`` price)."""
    served_by: str | None = None
    """The deployment that answered, where the model has several (``model/deployment`` when
    a fallback model did)."""
    attempts: int = 1
    """Calls it took across deployments and fallbacks (one client request, however many)."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of generated text, in order. Never splits a UTF-8 character."""

    text: str
    tokens: int = 1
    """How many generated tokens this delta covers (for charging cancelled streams)."""


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The last event of every stream: why it ended and the exact token counts."""

    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    """As ``Completion.cached_tokens``."""
    served_by: str | None = None
    """As ``Completion.served_by``."""
    attempts: int = 1


StreamEvent = TextDelta | ToolCallDelta | StreamEnd


@dataclass(frozen=True, slots=True)
class PrefixCacheStats:
    """A local backend's prefix cache: counters since start and what it holds now."""

    hit_tokens: int = 0
    """Prompt tokens whose KV cache was reused instead of computed."""
    evictions: int = 0
    blocks: int = 0
    bytes: int = 0
    budget_bytes: int = 0


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    """One deployment of a model with several: what readiness, metrics and admins see."""

    name: str
    backend: str
    state: str
    """Its circuit: ``closed`` (healthy), ``open``, ``half-open``; or ``failed`` to load."""
    healthy: bool
    in_flight: int = 0
    max_parallel: int | None = None
    requests: int = 0
    failures: int = 0
    retries: int = 0
    """Attempts it got after another attempt of the same request had failed."""
    latency_s: float | None = None
    """Moving average of its time to first token."""


@dataclass(frozen=True, slots=True)
class BackendStatus:
    """What readiness and metrics need to know about one loaded model."""

    model_id: str
    ready: bool
    error: str | None = None
    queue_depth: int = 0
    details: dict[str, str] = field(default_factory=dict)
    prefix_cache: PrefixCacheStats | None = None
    """``None`` where the backend has none (remote, MLX) or it is turned off."""
    deployments: tuple[DeploymentStatus, ...] = ()
    """A routed model's deployments; empty for a model served in one place."""
    fallbacks_used: int = 0
    """Requests a fallback model answered since start (a routed model)."""
