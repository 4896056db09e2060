"""What every local backend does around its model: tokens to events, worker to consumer.

A local backend samples token ids in a worker thread. ``TokenEvents`` turns each id into
the port's events (text deltas that never split a character or leak a stop string, then
one ``StreamEnd``); ``EventChannel`` carries them to the request's event loop, and
``consume`` is the async side that yields them and cancels the request when the
consumer goes away.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from typing import Any

from llmserver.adapters.inference.text import IncrementalDecoder, StopMatcher
from llmserver.domain.errors import ContextLengthExceeded, InvalidRequest
from llmserver.domain.inference import (
    Completion,
    FinishReason,
    GenerationParams,
    StreamEnd,
    StreamEvent,
    TextDelta,
)
from llmserver.domain.tools import ToolCallDelta, merge_deltas


class TokenEvents:
    """One request's generated tokens, turned into stream events as they come."""

    def __init__(
        self,
        decode: Callable[[Sequence[int]], str],
        params: GenerationParams,
        prompt_tokens: int,
        eos: Collection[int],
    ) -> None:
        self._decoder = IncrementalDecoder(decode)
        self._stops = StopMatcher(params.stop)
        self._max_tokens = params.max_tokens
        self._eos = eos
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0
        self._undelivered = 0

    def push(self, token: int) -> tuple[list[StreamEvent], bool]:
        """The events this token completes, and whether the request is finished."""
        self.completion_tokens += 1
        self._undelivered += 1
        finish: FinishReason | None = None
        if token in self._eos:
            text, finish = self._decoder.flush(), FinishReason.STOP
        else:
            text = self._decoder.push(token)
            if self.completion_tokens >= self._max_tokens:
                text, finish = text + self._decoder.flush(), FinishReason.LENGTH
        emit, stopped = self._stops.feed(text)
        if stopped:
            finish = FinishReason.STOP
        elif finish is not None:
            emit += self._stops.flush()
        events: list[StreamEvent] = []
        if emit:
            events.append(TextDelta(emit, tokens=self._undelivered))
            self._undelivered = 0
        if finish is not None:
            events.append(StreamEnd(finish, self.prompt_tokens, self.completion_tokens))
        return events, finish is not None


class EventChannel:
    """Worker thread -> the request's event loop. ``cancelled`` flows the other way.

    A ``buffered`` channel serves a caller that only wants the whole completion: it
    holds text deltas in the worker and hands everything over with the final event, so
    a batch of non-streaming requests does not wake the event loop (and take the GIL
    and a core from the model's threads) once per row and token.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, buffered: bool = False) -> None:
        self._loop = loop
        self.queue: asyncio.Queue[StreamEvent | BaseException] = asyncio.Queue()
        self.cancelled = False
        self._held: list[StreamEvent] | None = [] if buffered else None

    def send(self, event: StreamEvent | BaseException) -> None:
        held = self._held
        if held is None:
            self._deliver(self.queue.put_nowait, event)
        elif isinstance(event, TextDelta):
            held.append(event)
        else:
            self._held = []
            self._deliver(self._put_all, [*held, event])

    def _put_all(self, events: list[StreamEvent | BaseException]) -> None:
        for event in events:
            self.queue.put_nowait(event)

    def _deliver(self, put: Callable[[Any], object], payload: object) -> None:
        try:
            self._loop.call_soon_threadsafe(put, payload)
        except RuntimeError:  # the consumer's event loop is closed: nobody is listening
            self.cancelled = True


async def consume(
    channel: EventChannel, on_exit: Callable[[], object]
) -> AsyncIterator[StreamEvent]:
    """Yield the channel's events up to ``StreamEnd``; raise a delivered error.

    ``on_exit`` runs however the stream ends, including when the consumer closes it early
    or its task is cancelled, so the worker can drop the request.
    """
    try:
        while True:
            event = await channel.queue.get()
            if isinstance(event, BaseException):
                raise event
            yield event
            if isinstance(event, StreamEnd):
                return
    finally:
        channel.cancelled = True
        on_exit()


async def collect(stream: AsyncIterator[StreamEvent]) -> Completion:
    parts: list[str] = []
    calls: list[ToolCallDelta] = []
    async for event in stream:
        if isinstance(event, TextDelta):
            parts.append(event.text)
        elif isinstance(event, ToolCallDelta):
            calls.append(event)
        else:
            return Completion(
                text="".join(parts),
                prompt_tokens=event.prompt_tokens,
                completion_tokens=event.completion_tokens,
                finish_reason=event.finish_reason,
                tool_calls=merge_deltas(calls),
                cached_tokens=event.cached_tokens,
            )
    raise RuntimeError("the stream ended without a StreamEnd event")


def check_request(prompt_tokens: int, params: GenerationParams, context_length: int) -> None:
    if prompt_tokens == 0:
        # Nothing to prefill: the model cannot run an empty sequence. A chat template
        # always renders some tokens, so only a raw prompt gets here.
        raise InvalidRequest("The prompt encodes to no tokens; send some text.", param="prompt")
    if params.max_tokens < 1:
        raise InvalidRequest("max_tokens must be at least 1", param="max_tokens")
    if prompt_tokens + params.max_tokens > context_length:
        raise ContextLengthExceeded(
            prompt_tokens=prompt_tokens, max_tokens=params.max_tokens, context_length=context_length
        )
