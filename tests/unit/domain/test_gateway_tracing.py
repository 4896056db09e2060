"""The traced gateway: the same answers as the plain one, each step a span, no text unless
the tracer may carry it, and an inference span ended however its request ends."""

from __future__ import annotations

import pytest

from llmserver.domain.backend_ports import InferenceBackend, ModelBackends
from llmserver.domain.errors import UpstreamError
from llmserver.domain.gateway.traced import (
    TracedCache,
    TracedHotCache,
    TracedRateLimits,
    TracedUsage,
)
from llmserver.domain.gateway.traced_inference import TracedBackend, TracedBackends
from llmserver.domain.inference import GenerationParams
from llmserver.domain.logs import CacheStatus
from llmserver.domain.ports import CompletionCache, HotCache, RateLimitStore, UsageStore
from llmserver.domain.tracing import SpanKind
from traced_steps import miss_steps

from .fakes import FakeBackend, FakeBackends, RecordingTracer
from .world import MODEL, OTHER_MODEL, OTHER_SPEC, World, ask, origin

PROMPT = "what is six times seven"


async def test_a_traced_completion_answers_as_the_plain_one_with_a_span_per_step() -> None:
    plain, traced = World(), World(tracer=RecordingTracer())
    answers = []
    for world in (plain, traced):
        principal = await world.principal(rpm_limit=10, quota_tokens=1000)
        answers.append(await world.gateway.complete(principal, ask(PROMPT), origin("r1")))
    assert answers[0].completion == answers[1].completion
    assert [row.prompt_tokens for row in plain.logs] == [row.prompt_tokens for row in traced.logs]

    tracer = traced.tracer
    assert tracer is not None
    assert [s.name for s in tracer.spans] == miss_steps(MODEL)
    assert all(s.ended == 1 and s.error is None for s in tracer.spans)
    (inference,) = tracer.named(f"chat {MODEL}")
    # A local model runs in this process: INTERNAL, and a provider name of our own.
    assert inference.kind is SpanKind.INTERNAL
    assert inference.attributes["gen_ai.provider.name"] == "llmserver.torch"
    assert "server.address" not in inference.attributes
    completion = answers[1].completion
    assert inference.attributes["gen_ai.usage.input_tokens"] == completion.prompt_tokens
    assert inference.attributes["gen_ai.usage.output_tokens"] == completion.completion_tokens
    assert inference.attributes["gen_ai.response.finish_reasons"] == (
        completion.finish_reason.value,
    )
    assert not any(PROMPT in str(v) for s in tracer.spans for v in s.attributes.values())


async def test_an_http_models_inference_is_a_client_span_naming_its_upstream() -> None:
    """An upstream is another process reached over HTTP: CLIENT, as the GenAI conventions
    recommend, with the upstream's address; the provider stays ours (module doc)."""
    tracer = RecordingTracer()
    backends = TracedBackends(
        FakeBackends(FakeBackend(OTHER_MODEL)), tracer, {OTHER_MODEL: OTHER_SPEC}
    )
    backend = backends.backend(OTHER_MODEL)
    prompt = ask(model=OTHER_MODEL).prompt
    await backend.generate(prompt, GenerationParams())
    _ = [event async for event in backend.stream(prompt, GenerationParams())]
    spans = tracer.named(f"chat {OTHER_MODEL}")
    assert [s.kind for s in spans] == [SpanKind.CLIENT, SpanKind.CLIENT]
    for span in spans:
        assert span.attributes["gen_ai.provider.name"] == "llmserver.http"
        assert span.attributes["server.address"] == "upstream"  # OTHER_SPEC's http://upstream
        assert span.attributes["server.port"] == 80


async def test_with_log_bodies_the_inference_span_carries_the_prompt_and_answer() -> None:
    tracer = RecordingTracer(log_bodies=True)
    world = World(tracer=tracer)
    principal = await world.principal()
    outcome = await world.gateway.complete(principal, ask(PROMPT, stop=("STOP",)), origin("r1"))
    (inference,) = tracer.named(f"chat {MODEL}")
    assert PROMPT in str(inference.attributes["gen_ai.input.messages"])
    assert outcome.completion.text in str(inference.attributes["gen_ai.output.messages"])
    assert inference.attributes["gen_ai.request.stop_sequences"] == ("STOP",)


async def test_a_failed_inference_records_its_code_and_never_its_message() -> None:
    tracer = RecordingTracer()
    world = World(tracer=tracer)
    world.backend.error = UpstreamError(f"the upstream said: {PROMPT}")
    principal = await world.principal()
    with pytest.raises(UpstreamError):
        await world.gateway.complete(principal, ask(PROMPT), origin("r1"))
    (inference,) = tracer.named(f"chat {MODEL}")
    assert (inference.error, inference.ended) == ("upstream_error", 1)
    assert not any(PROMPT in str(v) for s in tracer.spans for v in s.attributes.values())


async def test_a_stream_left_early_ends_its_span_as_cancelled() -> None:
    tracer = RecordingTracer()
    world = World(tracer=tracer)
    principal = await world.principal()
    session = await world.gateway.open_stream(principal, ask(temperature=0.5), origin("s1"))
    assert session.cache_status is CacheStatus.BYPASS
    await anext(session.events)  # the first delta, then the client goes away
    await session.events.aclose()  # type: ignore[attr-defined]
    (inference,) = tracer.named(f"chat {MODEL}")
    assert (inference.error, inference.ended) == ("cancelled", 1)
    assert inference.attributes["gen_ai.request.stream"] is True
    first_chunk = inference.attributes["gen_ai.response.time_to_first_chunk"]
    assert isinstance(first_chunk, float)
    assert first_chunk >= 0
    assert world.backend.streams_closed == 1


async def test_a_finished_stream_reports_its_usage() -> None:
    tracer = RecordingTracer()
    world = World(tracer=tracer)
    principal = await world.principal()
    session = await world.gateway.open_stream(principal, ask(temperature=0.5), origin("s1"))
    events = [event async for event in session.events]
    (inference,) = tracer.named(f"chat {MODEL}")
    assert inference.ended == 1
    assert inference.error is None
    assert inference.attributes["gen_ai.usage.output_tokens"] == len(events) - 1


@pytest.mark.parametrize(
    ("wrapper", "port"),
    [
        (TracedCache, CompletionCache),
        (TracedHotCache, HotCache),
        (TracedUsage, UsageStore),
        (TracedRateLimits, RateLimitStore),
        (TracedBackend, InferenceBackend),
        (TracedBackends, ModelBackends),
    ],
)
def test_every_traced_wrapper_implements_its_whole_port(wrapper: type, port: type) -> None:
    """A wrapper subclasses its port, a Protocol: a method it does not define inherits the
    port's empty body, which answers None instead of passing the call on (the cache's
    purge and eviction were missed so once, when the port gained them)."""
    methods = {
        name
        for name, value in vars(port).items()
        if not name.startswith("_") and (callable(value) or isinstance(value, property))
    }
    assert methods
    assert methods - set(vars(wrapper)) == set()
