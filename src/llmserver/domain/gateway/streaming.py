"""A streamed answer: started before ``open_stream`` returns, so refusals and errors before
the first token become proper HTTP answers; its ``finally`` settles and logs even if the
caller never iterates or closes it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

from llmserver.domain.errors import UpstreamError
from llmserver.domain.gateway.answering import Answers
from llmserver.domain.gateway.outcomes import BackendErrors, Outcomes
from llmserver.domain.gateway.values import Admission, Call
from llmserver.domain.inference import (
    Assembly,
    Completion,
    FinishReason,
    ServedStream,
    StreamEnd,
    StreamEvent,
    TextDelta,
    close_stream,
)
from llmserver.domain.logs import CacheStatus
from llmserver.domain.ports import Clock, Telemetry
from llmserver.domain.tools import as_deltas


class Events:
    """A started stream: the event already fetched by ``open_stream``, then the rest."""

    def __init__(self, first: StreamEvent, rest: AsyncGenerator[StreamEvent, None]) -> None:
        self._first: StreamEvent | None = first
        self._rest = rest

    def __aiter__(self) -> Events:
        return self

    async def __anext__(self) -> StreamEvent:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return await anext(self._rest)

    async def aclose(self) -> None:
        self._first = None
        await self._rest.aclose()


async def _replay(cached: Completion) -> AsyncIterator[StreamEvent]:
    if not cached.tool_calls:
        yield TextDelta(cached.text, cached.completion_tokens, logprobs=cached.logprobs)
    else:
        if cached.text or cached.logprobs:
            yield TextDelta(cached.text, 0, logprobs=cached.logprobs)
        for delta in as_deltas(cached.tool_calls, cached.completion_tokens):
            yield delta
    for index, choice in enumerate(cached.more, start=1):
        if choice.text or choice.logprobs or not choice.tool_calls:
            yield TextDelta(choice.text, 0, index, choice.logprobs)
        for delta in as_deltas(choice.tool_calls, choice=index):
            yield delta
    yield StreamEnd(
        cached.finish_reason,
        cached.prompt_tokens,
        cached.completion_tokens,
        more=tuple(choice.finish_reason for choice in cached.more),
    )


class Streams:
    def __init__(
        self, *, answers: Answers, outcomes: Outcomes, clock: Clock, telemetry: Telemetry
    ) -> None:
        self._answers = answers
        self._outcomes = outcomes
        self._clock = clock
        self._telemetry = telemetry

    def _first_token(self, admission: Admission) -> None:
        self._telemetry.first_token(
            admission.spec.id, self._clock.monotonic() - admission.admitted_at
        )

    async def run(self, call: Call, admission: Admission) -> AsyncGenerator[StreamEvent, None]:
        produced = 0
        parts = Assembly()
        events: AsyncIterator[StreamEvent] | None = None
        try:
            key = admission.cache_key
            cached = await self._answers.cached(admission)
            if cached is not None:
                admission.cache_status = CacheStatus.HIT
                events = _replay(cached)
            else:
                admission.cache_status = CacheStatus.BYPASS if key is None else CacheStatus.MISS
                events = admission.backend.stream(call.request.prompt, admission.params)
            stream_started = self._clock.monotonic()
            try:
                end: StreamEnd | None = None
                while end is None:
                    with BackendErrors(self._telemetry, admission.spec.id):
                        event = await anext(events, None)
                        if event is None:
                            raise UpstreamError("The model's stream ended without a final event.")
                    # One type check per delta: the stream's end is the rare case.
                    if not isinstance(event, StreamEnd):
                        if cached is None and not parts.started:
                            self._first_token(admission)
                        produced += event.tokens
                        parts.add(event)
                    else:
                        end = event
                        if cached is None:
                            self._telemetry.generation(
                                admission.spec.id,
                                self._clock.monotonic() - stream_started,
                                end.completion_tokens,
                            )
                    yield event
            finally:
                await close_stream(events)
            completion = parts.completion(end, logprobs=admission.params.logprobs is not None)
            await self._outcomes.settle(admission, completion)
            if admission.cache_status is CacheStatus.MISS:
                await self._answers.store(admission, completion)
        except BaseException as exc:
            # Cut short. A failure before anything was sent costs nothing, like a failed
            # non-streaming request; otherwise the client pays for what it was sent.
            sent = isinstance(exc, asyncio.CancelledError | GeneratorExit) or produced > 0
            if sent:
                sent_so_far = Completion(
                    "",
                    admission.prompt_tokens,
                    produced,
                    FinishReason.STOP,
                    # At the prices of what was serving it, where the stream knows them.
                    prices=events.prices if isinstance(events, ServedStream) else None,
                )
                await self._outcomes.fail(call, admission, exc, completion=sent_so_far)
            else:
                await self._outcomes.fail(call, admission, exc)
            raise
        self._outcomes.succeed(call, admission, completion)
