"""Fakes for the gateway's non-storage ports (the storage ports use the memory adapters)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar, cast

from llmserver.domain.embeddings import EmbeddingInput, Embeddings, float32_bytes
from llmserver.domain.errors import Unavailable
from llmserver.domain.inference import (
    BackendStatus,
    Completion,
    FinishReason,
    GenerationParams,
    Prompt,
    StreamEnd,
    StreamEvent,
    TextDelta,
)
from llmserver.domain.tools import ToolCall, as_deltas
from llmserver.domain.tracing import Attributes, AttributeValue, Span, SpanKind, error_type

T = TypeVar("T")


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)) -> None:
        self._now = start
        self._monotonic = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._monotonic += seconds


def words(prompt: Prompt) -> int:
    """The fake tokenizer: one token per whitespace-separated word."""
    if prompt.messages is not None:
        return sum(len(m.content.split()) for m in prompt.messages)
    assert prompt.text is not None
    return len(prompt.text.split())


@dataclass
class FakeBackend:
    """An InferenceBackend answering ``reply`` (one token per word).

    ``gate``: when set, generation waits for it (a slow backend); ``error``: raised by
    ``generate`` and at the start of ``stream`` for prompts where ``fails(prompt)``;
    ``fail_after``: a stream raises ``stream_error`` after that many deltas;
    ``send_end=False``: a broken stream that stops without its StreamEnd;
    ``clock``/``token_seconds``: each generated token advances the clock.
    """

    model_id: str
    reply: str = "the answer is forty two"
    gate: asyncio.Event | None = None
    error: BaseException | None = None
    fails: Callable[[Prompt], bool] = lambda _: True
    fail_after: int | None = None
    stream_error: BaseException = field(default_factory=lambda: RuntimeError("GPU on fire"))
    send_end: bool = True
    clock: FakeClock | None = None
    token_seconds: float = 0.0
    waits: int = 0
    generate_calls: int = 0
    count_calls: int = 0
    stream_calls: int = 0
    cancelled: int = 0
    streams_closed: int = 0
    seen_params: list[GenerationParams] = field(default_factory=list)
    cached_tokens: int = 0
    """Prompt tokens each answer reports as read from a prompt cache (as an http upstream)."""
    chars_per_token: int | None = None
    """When set, ``min_prompt_tokens`` bounds the count by the prompt's length, as for a
    vocabulary whose longest token has this many characters."""
    calls: tuple[ToolCall, ...] = ()
    """When set, every answer calls these (after its text), ending ``tool_calls``."""

    async def count_tokens(self, prompt: Prompt) -> int:
        self.count_calls += 1
        return words(prompt)

    def min_prompt_tokens(self, prompt: Prompt) -> int:
        if self.chars_per_token is None:
            return 0
        chars = sum(len(m.content) for m in prompt.messages or ()) + len(prompt.text or "")
        return -(-chars // self.chars_per_token)

    def _tokens(self, params: GenerationParams) -> list[str]:
        return self.reply.split()[: params.max_tokens]

    def _tick(self, tokens: int) -> None:
        if self.clock is not None:
            self.clock.advance(tokens * self.token_seconds)

    async def _wait(self) -> None:
        if self.gate is not None:
            self.waits += 1
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise

    async def generate(self, prompt: Prompt, params: GenerationParams) -> Completion:
        self.generate_calls += 1
        self.seen_params.append(params)
        await self._wait()
        if self.error is not None and self.fails(prompt):
            raise self.error
        tokens = self._tokens(params)
        self._tick(len(tokens))
        finish = FinishReason.LENGTH if len(tokens) < len(self.reply.split()) else FinishReason.STOP
        if self.calls:
            finish = FinishReason.TOOL_CALLS
        return Completion(
            text=" ".join(tokens),
            prompt_tokens=words(prompt),
            completion_tokens=len(tokens),
            finish_reason=finish,
            tool_calls=self.calls,
            cached_tokens=self.cached_tokens,
        )

    async def stream(self, prompt: Prompt, params: GenerationParams) -> AsyncIterator[StreamEvent]:
        self.stream_calls += 1
        self.seen_params.append(params)
        try:
            if self.error is not None and self.fails(prompt):
                raise self.error
            tokens = self._tokens(params)
            for index, token in enumerate(tokens):
                if index == self.fail_after:
                    raise self.stream_error
                await self._wait()
                self._tick(1)
                yield TextDelta(token if index == 0 else f" {token}")
            finish = (
                FinishReason.LENGTH if len(tokens) < len(self.reply.split()) else FinishReason.STOP
            )
            for delta in as_deltas(self.calls):
                finish = FinishReason.TOOL_CALLS
                yield delta
            if self.send_end:
                yield StreamEnd(
                    finish, words(prompt), len(tokens), cached_tokens=self.cached_tokens
                )
        finally:
            self.streams_closed += 1

    def status(self) -> BackendStatus:
        return BackendStatus(self.model_id, ready=True)

    async def close(self) -> None:
        pass


@dataclass
class FakeEmbedder:
    """An EmbeddingBackend: one token per word, and each vector ``[words, chars, 0, ...]``
    (``dimensions`` values) as float32, so a test can tell which input made which."""

    model_id: str
    dimensions: int = 4
    calls: int = 0
    gate: asyncio.Event | None = None

    async def count_tokens(self, inputs: Sequence[EmbeddingInput]) -> list[int]:
        return [len(i.split()) if isinstance(i, str) else len(i) for i in inputs]

    async def embed(self, inputs: Sequence[EmbeddingInput], dimensions: int | None) -> Embeddings:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        counts = await self.count_tokens(inputs)
        width = dimensions or self.dimensions
        vectors = [
            float32_bytes([float(n), float(len(i)), *[0.0] * (width - 2)])
            for n, i in zip(counts, inputs, strict=True)
        ]
        return Embeddings(vectors, sum(counts))

    def status(self) -> BackendStatus:
        return BackendStatus(self.model_id, ready=True)

    async def close(self) -> None:
        pass


class FakeBackends:
    """ModelBackends over a fixed set of fake backends."""

    def __init__(self, *backends: FakeBackend, embedders: Sequence[FakeEmbedder] = ()) -> None:
        self._by_id = {b.model_id: b for b in backends}
        self._embedders = {e.model_id: e for e in embedders}

    def backend(self, model_id: str) -> FakeBackend:
        if model_id not in self._by_id:
            raise Unavailable(f"The model '{model_id}' is not loaded.")
        return self._by_id[model_id]

    def embedder(self, model_id: str) -> FakeEmbedder:
        if model_id not in self._embedders:
            raise Unavailable(f"The model '{model_id}' is not loaded.")
        return self._embedders[model_id]

    def statuses(self) -> Sequence[BackendStatus]:
        return [
            *(b.status() for b in self._by_id.values()),
            *(e.status() for e in self._embedders.values()),
        ]


@dataclass
class RecordingTelemetry:
    """Telemetry that keeps every event as a tuple, in order."""

    events: list[tuple[object, ...]] = field(default_factory=list)

    def of(self, name: str) -> list[tuple[object, ...]]:
        return [event[1:] for event in self.events if event[0] == name]

    def cache_lookup(self, layer: str, hit: bool) -> None:
        self.events.append(("cache_lookup", layer, hit))

    def refused(self, cause: str) -> None:
        self.events.append(("refused", cause))

    def tokens(self, model: str, prompt: int, completion: int) -> None:
        self.events.append(("tokens", model, prompt, completion))

    def spend(self, model: str, picodollars: int) -> None:
        self.events.append(("spend", model, picodollars))

    def team_usage(self, team: str, prompt: int, completion: int, picodollars: int) -> None:
        self.events.append(("team_usage", team, prompt, completion, picodollars))

    def first_token(self, model: str, seconds: float) -> None:
        self.events.append(("first_token", model, seconds))

    def generation(self, model: str, seconds: float, completion_tokens: int) -> None:
        self.events.append(("generation", model, seconds, completion_tokens))

    def backend_error(self, model: str, kind: str) -> None:
        self.events.append(("backend_error", model, kind))


def run_now(awaitable: Coroutine[object, object, T]) -> T:
    """Run a coroutine that never suspends (the memory adapters) without an event loop.

    Property tests call the stores thousands of times; a loop per example would dominate.
    """
    try:
        awaitable.send(None)
    except StopIteration as done:
        return cast("T", done.value)
    awaitable.close()
    raise AssertionError("the coroutine suspended; run it on an event loop")


@dataclass
class RecordedSpan:
    name: str
    parent: RecordedSpan | None
    attributes: dict[str, AttributeValue]
    kind: SpanKind = SpanKind.INTERNAL
    error: str | None = None
    ended: int = 0

    def set(self, key: str, value: AttributeValue) -> None:
        assert not self.ended, f"{self.name}: set after end"
        self.attributes[key] = value

    def fail(self, error: BaseException | str) -> None:
        self.error = error_type(error)

    def end(self) -> None:
        self.ended += 1


_CURRENT: ContextVar[RecordedSpan | None] = ContextVar("current_span", default=None)


class _Current:
    def __init__(self, span: RecordedSpan) -> None:
        self._span = span
        self._token: Token[RecordedSpan | None] | None = None

    def __enter__(self) -> None:
        self._token = _CURRENT.set(self._span)

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None
        _CURRENT.reset(self._token)


@dataclass
class RecordingTracer:
    """A Tracer that keeps every span, its parent (the current span when it started) and
    what was set on it."""

    log_bodies: bool = False
    spans: list[RecordedSpan] = field(default_factory=list)

    def start(
        self,
        name: str,
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes | None = None,
        traceparent: str | None = None,
    ) -> RecordedSpan:
        span = RecordedSpan(name, _CURRENT.get(), dict(attributes or {}), kind)
        self.spans.append(span)
        return span

    def current(self, span: Span) -> _Current:
        assert isinstance(span, RecordedSpan)
        return _Current(span)

    def traceparent(self, span: Span) -> str:
        return "00-" + "1" * 32 + "-" + "2" * 16 + "-01"

    async def close(self) -> None:
        return None

    def named(self, name: str) -> list[RecordedSpan]:
        return [s for s in self.spans if s.name == name]
