"""Value types shared by the gateway and every inference backend."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from llmserver.domain.output_constraint import OutputConstraint
from llmserver.domain.pricing import Prices
from llmserver.domain.tools import ToolCall, ToolCallDelta, Tools, merge_deltas


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


MAX_TOP_LOGPROBS = 20
"""OpenAI's bound on ``top_logprobs`` (a text completion's ``logprobs`` is bound to 5)."""

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
    logprobs: int | None = None
    """``None``: no log probabilities; ``k`` (0 to ``MAX_TOP_LOGPROBS``): each generated
    token's, with the ``k`` likeliest tokens at its step."""
    n: int = 1
    """Completions of the one prompt; with a ``seed``, choice ``i`` samples with
    ``seed + i`` (as vLLM does), so the n choices differ and every one reproduces."""

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


@dataclass(frozen=True, slots=True)
class TopLogprob:
    """One of the likeliest tokens at a step, and its log probability."""

    token: str
    logprob: float
    bytes: tuple[int, ...] | None = None
    """The token's bytes where they are not its text's UTF-8 (part of a character);
    ``None``: they are."""


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """A generated token's log probability, and the likeliest tokens at its step."""

    token: str
    logprob: float
    top: tuple[TopLogprob, ...] = ()
    bytes: tuple[int, ...] | None = None
    """As ``TopLogprob.bytes``."""


Logprobs = tuple[TokenLogprob, ...]


@dataclass(frozen=True, slots=True)
class Choice:
    """One more completion of the same prompt, when ``n`` > 1 asked for several."""

    text: str
    finish_reason: FinishReason
    logprobs: Logprobs | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    """The calls this choice made (each choice reads its own answer for calls)."""


# Not frozen: built on every request's path (see ``RequestLog``).
@dataclass(slots=True)
class Completion:
    """The first (usually only) choice, and the counts of the whole answer."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    """Every choice's tokens together (the prompt is counted once, as OpenAI does)."""
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
    prices: Prices | None = None
    """What its tokens cost where it was served, when that may differ from the model asked
    for (a deployment's own prices, a fallback model's); ``None``: that model's."""
    logprobs: Logprobs | None = None
    """``None`` unless asked for; then one per generated token of this choice's text."""
    more: tuple[Choice, ...] = ()
    """Choices 1 to n - 1, in order, when the request asked for ``n`` > 1."""

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of generated text, in order. Never splits a UTF-8 character."""

    text: str
    tokens: int = 1
    """How many generated tokens this delta covers (for charging cancelled streams)."""
    index: int = 0
    """Which choice it belongs to (only ``n`` > 1 has others than 0)."""
    logprobs: Logprobs | None = None
    """The log probabilities of the tokens it covers, when asked for (its text may be
    empty: the last tokens of a choice whose text a stop string cut)."""


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The last event of every stream: why it ended and the exact token counts."""

    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    """Every choice's tokens together."""
    cached_tokens: int = 0
    """As ``Completion.cached_tokens``."""
    served_by: str | None = None
    """As ``Completion.served_by``."""
    attempts: int = 1
    prices: Prices | None = None
    """As ``Completion.prices``."""
    more: tuple[FinishReason, ...] = ()
    """Why choices 1 to n - 1 ended, when there are more choices than one."""


StreamEvent = TextDelta | ToolCallDelta | StreamEnd


async def close_stream(events: AsyncIterator[Any]) -> None:
    """Close ``events`` if it can be closed (an async generator, a ``ServedStream``), so
    whatever makes them hears that its consumer went away."""
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


class ServedStream(AsyncIterator[StreamEvent]):
    """A stream that learns, once it has started, the prices of what serves it (a routed
    model's deployment, a fallback): a stream cut short before its ``StreamEnd`` is
    charged at them. ``prices`` stays ``None`` until then, or where they are the model's.

    ``start`` makes the events, told this stream to set its ``prices`` on."""

    __slots__ = ("_events", "prices")

    def __init__(self, start: Callable[[ServedStream], AsyncGenerator[StreamEvent, None]]) -> None:
        self.prices: Prices | None = None
        self._events = start(self)

    def __aiter__(self) -> ServedStream:
        return self

    def __anext__(self) -> Awaitable[StreamEvent]:
        # The generator's own awaitable: no coroutine of ours per event.
        return self._events.__anext__()

    async def aclose(self) -> None:
        await self._events.aclose()


class Assembly:
    """A stream's deltas gathered into the ``Completion`` they make: text, log
    probabilities and tool calls per choice."""

    __slots__ = ("_calls", "_logprobs", "_texts")

    def __init__(self) -> None:
        self._texts: list[list[str]] = [[]]
        self._logprobs: list[list[TokenLogprob]] = [[]]
        self._calls: list[list[ToolCallDelta]] = [[]]

    @property
    def started(self) -> bool:
        """Whether any delta has come yet."""
        return any(self._calls) or any(self._texts)

    def _grow(self, choices: int) -> None:
        while len(self._texts) < choices:
            self._texts.append([])
            self._logprobs.append([])
            self._calls.append([])

    def add(self, delta: TextDelta | ToolCallDelta) -> None:
        if isinstance(delta, ToolCallDelta):
            self._grow(delta.choice + 1)
            self._calls[delta.choice].append(delta)
            return
        self._grow(delta.index + 1)
        self._texts[delta.index].append(delta.text)
        if delta.logprobs:
            self._logprobs[delta.index].extend(delta.logprobs)

    def completion(self, end: StreamEnd, *, logprobs: bool) -> Completion:
        """What the stream made, ended by ``end``; ``logprobs``: they were asked for."""
        reasons = (end.finish_reason, *end.more)
        self._grow(len(reasons))
        choices = [
            Choice("".join(text), reason, tuple(found) if logprobs else None, merge_deltas(calls))
            for text, found, calls, reason in zip(
                self._texts, self._logprobs, self._calls, reasons, strict=False
            )
        ]
        first = choices[0]
        return Completion(
            text=first.text,
            prompt_tokens=end.prompt_tokens,
            completion_tokens=end.completion_tokens,
            finish_reason=end.finish_reason,
            tool_calls=first.tool_calls,
            cached_tokens=end.cached_tokens,
            served_by=end.served_by,
            attempts=end.attempts,
            prices=end.prices,
            logprobs=first.logprobs,
            more=tuple(choices[1:]),
        )


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
