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
from dataclasses import replace
from typing import Any

from llmserver.adapters.inference.grammar import CompiledGrammar, Grammars
from llmserver.adapters.inference.local_tools import forced_call, with_calls
from llmserver.adapters.inference.prompts import PromptEncoder
from llmserver.adapters.inference.text import IncrementalDecoder, StopMatcher
from llmserver.adapters.inference.tool_parsing import ToolCallFormat
from llmserver.domain.errors import ContextLengthExceeded, InvalidRequest
from llmserver.domain.inference import (
    Assembly,
    Completion,
    FinishReason,
    GenerationParams,
    Prompt,
    StreamEnd,
    StreamEvent,
    TextDelta,
    TokenLogprob,
)


class ChoiceEnds:
    """The ``n`` choices of one request, each a row of its own: one ``StreamEnd`` for
    the request once the last of them has ended (choices end in any order)."""

    def __init__(self, n: int) -> None:
        self._reasons: list[FinishReason | None] = [None] * n
        self._left = n
        self._tokens = 0

    def end(
        self, index: int, reason: FinishReason, prompt_tokens: int, tokens: int
    ) -> StreamEnd | None:
        self._reasons[index] = reason
        self._tokens += tokens
        self._left -= 1
        if self._left:
            return None
        first, *more = (r or FinishReason.STOP for r in self._reasons)
        return StreamEnd(first, prompt_tokens, self._tokens, more=tuple(more))


class TokenEvents:
    """One row's generated tokens, turned into stream events as they come."""

    def __init__(
        self,
        decode: Callable[[Sequence[int]], str],
        params: GenerationParams,
        prompt_tokens: int,
        eos: Collection[int],
        *,
        index: int = 0,
        ends: ChoiceEnds | None = None,
    ) -> None:
        """``index``: the choice this row makes; ``ends``: its request's choices, when
        ``n`` > 1 (then the request's ``StreamEnd`` comes with its last choice's)."""
        self._decoder = IncrementalDecoder(decode)
        self._stops = StopMatcher(params.stop)
        self._max_tokens = params.max_tokens
        self._eos = eos
        self._index = index
        self._ends = ends
        self._logprobs: list[TokenLogprob] | None = None if params.logprobs is None else []
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0
        self._undelivered = 0

    def push(
        self, token: int, logprob: TokenLogprob | None = None
    ) -> tuple[list[StreamEvent], bool]:
        """The events this token completes, and whether the row is finished. ``logprob``:
        the token's (when asked for) goes out with the text it completes; an end of
        sequence has none, as it adds no text."""
        self.completion_tokens += 1
        self._undelivered += 1
        finish: FinishReason | None = None
        if token in self._eos:
            text, finish = self._decoder.flush(), FinishReason.STOP
        else:
            if logprob is not None and self._logprobs is not None:
                self._logprobs.append(logprob)
            text = self._decoder.push(token)
            if self.completion_tokens >= self._max_tokens:
                text, finish = text + self._decoder.flush(), FinishReason.LENGTH
        emit, stopped = self._stops.feed(text)
        if stopped:
            finish = FinishReason.STOP
        elif finish is not None:
            emit += self._stops.flush()
        events: list[StreamEvent] = []
        logprobs = self._logprobs
        if emit or (finish is not None and logprobs):
            events.append(
                TextDelta(
                    emit,
                    tokens=self._undelivered,
                    index=self._index,
                    logprobs=None if logprobs is None else tuple(logprobs),
                )
            )
            self._undelivered = 0
            if logprobs:
                self._logprobs = []
        if finish is not None:
            end: StreamEnd | None = StreamEnd(finish, self.prompt_tokens, self.completion_tokens)
            if self._ends is not None:
                end = self._ends.end(
                    self._index, finish, self.prompt_tokens, self.completion_tokens
                )
            if end is not None:
                events.append(end)
        return events, finish is not None


def choice_events(
    decode: Callable[[Sequence[int]], str],
    params: GenerationParams,
    prompt_tokens: int,
    eos: Collection[int],
) -> list[tuple[GenerationParams, TokenEvents]]:
    """Each of the request's ``n`` choices: its parameters (choice ``i`` seeded with
    ``seed + i``, so the choices differ and each reproduces) and its row's events."""
    ends = ChoiceEnds(params.n) if params.n > 1 else None
    rows = []
    for index in range(params.n):
        own = params
        if index and params.seed is not None:
            own = replace(params, seed=params.seed + index)
        rows.append((own, TokenEvents(decode, own, prompt_tokens, eos, index=index, ends=ends)))
    return rows


def local_events(
    prompt: Prompt,
    params: GenerationParams,
    fmt: ToolCallFormat | None,
    grammars: Grammars,
    encode: PromptEncoder,
    start: Callable[[list[int], CompiledGrammar], AsyncIterator[StreamEvent]],
) -> AsyncIterator[StreamEvent]:
    """A local backend's answer to ``prompt``: the grammar it decodes under compiled
    (``response_format``'s, or a forced call's), the prompt encoded, then ``start(ids,
    grammar)``'s events with the calls in their text read out."""
    constraint, calls = forced_call(prompt.tools, fmt, params.constraint)
    return grammars.stream(
        constraint,
        lambda grammar: encode.start(
            prompt, lambda ids: with_calls(prompt, calls, start(ids, grammar))
        ),
    )


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


async def collect(stream: AsyncIterator[StreamEvent], params: GenerationParams) -> Completion:
    """The completion ``stream`` makes, every choice of it and its tool calls."""
    parts = Assembly()
    async for event in stream:
        if isinstance(event, StreamEnd):
            return parts.completion(event, logprobs=params.logprobs is not None)
        parts.add(event)
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
