"""The inference span: a backend's call, in the OpenTelemetry GenAI semantic conventions.

One span per call to a model (``chat demo-tiny-llama``, ``embeddings demo-embed``): what was asked
(``gen_ai.request.*``), what it cost (``gen_ai.usage.input_tokens``,
``gen_ai.usage.output_tokens``), how it ended (``gen_ai.response.finish_reasons``) and, for a
stream, how long the first text took (``gen_ai.response.time_to_first_chunk``). The span is
current while the backend works, so the backend's own spans (its queue, an upstream's HTTP
call) are its children. Prompt and completion text (``gen_ai.input.messages``,
``gen_ai.output.messages``, the stop sequences) only when the tracer's ``log_bodies`` allows.

``gen_ai.provider.name`` (Required by the conventions) is ``llmserver.<backend>``, a custom
value: a local model (``llmserver.torch``, ``llmserver.mlx``) is served by this process, and
an ``http`` upstream (``llmserver.http``) is any OpenAI-compatible server (vLLM, another
LLM Server, OpenAI itself), which the configuration does not say; the well-known ``openai``
would claim OpenAI's own telemetry flavour. For ``http``, ``server.address`` and
``server.port`` name the upstream instead, as the conventions suggest for telling the actual
system apart. Span kind: ``CLIENT`` for an ``http`` model (a call to another process over
HTTP, where the conventions recommend it), ``INTERNAL`` for a local one (a model running in
this process, which they allow).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from urllib.parse import urlsplit

from llmserver.domain.backend_ports import EmbeddingBackend, InferenceBackend, ModelBackends
from llmserver.domain.embeddings import EmbeddingInput, Embeddings
from llmserver.domain.inference import (
    BackendStatus,
    Completion,
    FinishReason,
    GenerationParams,
    Prompt,
    StreamEnd,
    StreamEvent,
    TextDelta,
    close_stream,
)
from llmserver.domain.registry import BackendKind, ModelSpec
from llmserver.domain.tracing import AttributeValue, Span, SpanKind, Spanned, Tracer

_DEFAULT_PORTS = {"http": 80, "https": 443}


def provider_attributes(spec: ModelSpec) -> dict[str, AttributeValue]:
    """``gen_ai.provider.name`` and, for an ``http`` upstream, its address (module doc)."""
    attributes: dict[str, AttributeValue] = {"gen_ai.provider.name": f"llmserver.{spec.backend}"}
    if spec.backend is BackendKind.HTTP:
        url = urlsplit(spec.source)
        if url.hostname:
            attributes["server.address"] = url.hostname
            attributes["server.port"] = url.port or _DEFAULT_PORTS.get(url.scheme, 80)
    return attributes


def _messages(prompt: Prompt) -> str:
    """``gen_ai.input.messages``: the conventions' JSON of role and text parts."""
    if prompt.messages is None:
        turns = [("user", prompt.text or "")]
    else:
        turns = [(m.role, m.content) for m in prompt.messages]
    return json.dumps(
        [{"role": role, "parts": [{"type": "text", "content": text}]} for role, text in turns]
    )


def _answer(text: str, finish: FinishReason) -> str:
    """``gen_ai.output.messages`` for one choice."""
    message = {
        "role": "assistant",
        "parts": [{"type": "text", "content": text}],
        "finish_reason": finish.value,
    }
    return json.dumps([message])


class TracedBackend(InferenceBackend):
    """One backend whose ``generate`` and ``stream`` are inference spans."""

    def __init__(self, inner: InferenceBackend, tracer: Tracer, spec: ModelSpec) -> None:
        self.inner = inner
        self._tracer = tracer
        self._provider = provider_attributes(spec)
        remote = spec.backend is BackendKind.HTTP
        self._kind = SpanKind.CLIENT if remote else SpanKind.INTERNAL

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    async def count_tokens(self, prompt: Prompt) -> int:
        with Spanned(self._tracer, "llmserver.count_tokens") as span:
            count = await self.inner.count_tokens(prompt)
            span.set("llmserver.prompt_tokens", count)
            return count

    def min_prompt_tokens(self, prompt: Prompt) -> int:
        return self.inner.min_prompt_tokens(prompt)

    async def generate(self, prompt: Prompt, params: GenerationParams) -> Completion:
        name, attributes = self._request(prompt, params, stream=False)
        with Spanned(self._tracer, name, attributes, self._kind) as span:
            # Current while the backend works: its queue and upstream spans are children.
            with self._tracer.current(span):
                completion = await self.inner.generate(prompt, params)
            self._finish(span, completion, completion.finish_reason, completion.text)
            return completion

    async def stream(self, prompt: Prompt, params: GenerationParams) -> AsyncIterator[StreamEvent]:
        """The backend's stream, current in the span only while the backend runs: the
        span is never left current in the consumer's context across a ``yield``."""
        tracer = self._tracer
        name, attributes = self._request(prompt, params, stream=True)
        span = tracer.start(name, kind=self._kind, attributes=attributes)
        started = time.monotonic()
        first = True
        finished = False
        texts: list[str] | None = [] if tracer.log_bodies else None
        current = tracer.current(span)  # entered again for each event, built once
        try:
            with current:
                events = self.inner.stream(prompt, params)
            try:
                while True:
                    with current:
                        event = await anext(events, None)
                    if event is None:
                        break
                    if isinstance(event, TextDelta):
                        if first and event.text:
                            first = False
                            ttft = time.monotonic() - started
                            span.set("gen_ai.response.time_to_first_chunk", ttft)
                        if texts is not None:
                            texts.append(event.text)
                    elif isinstance(event, StreamEnd):
                        finished = True
                        text = None if texts is None else "".join(texts)
                        self._finish(span, event, event.finish_reason, text)
                    yield event
            finally:
                await close_stream(events)
        except BaseException as exc:
            # Closed once its final event is out: how a consumer ends a stream, not a failure.
            if not (finished and isinstance(exc, GeneratorExit)):
                span.fail(exc)
            raise
        finally:
            span.end()

    def status(self) -> BackendStatus:
        return self.inner.status()

    async def close(self) -> None:
        await self.inner.close()

    def _request(
        self, prompt: Prompt, params: GenerationParams, *, stream: bool
    ) -> tuple[str, dict[str, AttributeValue]]:
        operation = "text_completion" if prompt.messages is None else "chat"
        model = self.inner.model_id
        attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": operation,
            **self._provider,
            "gen_ai.request.model": model,
            "gen_ai.request.max_tokens": params.max_tokens,
            "gen_ai.request.temperature": params.temperature,
            "gen_ai.request.top_p": params.top_p,
            "gen_ai.request.stream": stream,
        }
        if params.seed is not None:
            attributes["gen_ai.request.seed"] = params.seed
        if params.top_k is not None:
            attributes["gen_ai.request.top_k"] = params.top_k
        if self._tracer.log_bodies:
            attributes["gen_ai.input.messages"] = _messages(prompt)
            if params.stop:
                attributes["gen_ai.request.stop_sequences"] = params.stop
        return f"{operation} {model}", attributes

    def _finish(
        self, span: Span, usage: Completion | StreamEnd, finish: FinishReason, text: str | None
    ) -> None:
        span.set("gen_ai.response.model", self.inner.model_id)
        span.set("gen_ai.usage.input_tokens", usage.prompt_tokens)
        span.set("gen_ai.usage.output_tokens", usage.completion_tokens)
        span.set("gen_ai.response.finish_reasons", (finish.value,))
        if self._tracer.log_bodies and text is not None:
            span.set("gen_ai.output.messages", _answer(text, finish))


class TracedEmbedder(EmbeddingBackend):
    """One embedding backend whose ``embed`` is an inference span (operation
    ``embeddings``, as the GenAI conventions name it), current while the backend works."""

    def __init__(self, inner: EmbeddingBackend, tracer: Tracer, spec: ModelSpec) -> None:
        self.inner = inner
        self._tracer = tracer
        self._attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": "embeddings",
            **provider_attributes(spec),
            "gen_ai.request.model": spec.id,
        }
        self._kind = SpanKind.CLIENT if spec.backend is BackendKind.HTTP else SpanKind.INTERNAL

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    async def count_tokens(self, inputs: Sequence[EmbeddingInput]) -> list[int]:
        return await self.inner.count_tokens(inputs)

    async def embed(self, inputs: Sequence[EmbeddingInput], dimensions: int | None) -> Embeddings:
        name = f"embeddings {self.inner.model_id}"
        with Spanned(self._tracer, name, self._attributes, self._kind) as span:
            with self._tracer.current(span):
                embeddings = await self.inner.embed(inputs, dimensions)
            span.set("gen_ai.usage.input_tokens", embeddings.prompt_tokens)
            if embeddings.vectors:  # float32: four bytes a dimension
                span.set("gen_ai.embeddings.dimension.count", len(embeddings.vectors[0]) // 4)
            return embeddings

    def status(self) -> BackendStatus:
        return self.inner.status()

    async def close(self) -> None:
        await self.inner.close()


class TracedBackends(ModelBackends):
    """``ModelBackends`` whose backends are ``TracedBackend``s (one per loaded backend);
    ``specs`` (the registry's, by id) say which kind of backend each model has."""

    def __init__(
        self, inner: ModelBackends, tracer: Tracer, specs: Mapping[str, ModelSpec]
    ) -> None:
        self._inner = inner
        self._tracer = tracer
        self._specs = specs
        self._traced: dict[str, TracedBackend] = {}
        self._embedders: dict[str, TracedEmbedder] = {}

    def backend(self, model_id: str) -> InferenceBackend:
        inner = self._inner.backend(model_id)
        traced = self._traced.get(model_id)
        if traced is None or traced.inner is not inner:  # a reloaded model is a new backend
            spec = self._specs[model_id]  # the gateway asks only for models it resolved
            traced = self._traced[model_id] = TracedBackend(inner, self._tracer, spec)
        return traced

    def embedder(self, model_id: str) -> EmbeddingBackend:
        inner = self._inner.embedder(model_id)
        traced = self._embedders.get(model_id)
        if traced is None or traced.inner is not inner:  # a reloaded model is a new backend
            spec = self._specs[model_id]
            traced = self._embedders[model_id] = TracedEmbedder(inner, self._tracer, spec)
        return traced

    def statuses(self) -> Sequence[BackendStatus]:
        return self._inner.statuses()
