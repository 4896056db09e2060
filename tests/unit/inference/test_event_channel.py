"""Worker thread to event loop: what a streaming and a buffered channel deliver, and when."""

from __future__ import annotations

import asyncio
import threading

import pytest

from llmserver.adapters.inference.generation import EventChannel, collect, consume
from llmserver.domain.errors import GenerationTimeout
from llmserver.domain.inference import (
    FinishReason,
    GenerationParams,
    StreamEnd,
    StreamEvent,
    TextDelta,
)

END = StreamEnd(FinishReason.STOP, prompt_tokens=3, completion_tokens=2)


async def from_worker(channel: EventChannel, events: list[StreamEvent | BaseException]) -> None:
    """Send ``events`` from another thread, as a backend's worker does."""

    def send_all() -> None:
        for event in events:
            channel.send(event)

    worker = threading.Thread(target=send_all)
    worker.start()
    await asyncio.to_thread(worker.join)


async def test_streaming_channel_delivers_each_delta_as_it_comes() -> None:
    channel = EventChannel(asyncio.get_running_loop())
    await from_worker(channel, [TextDelta("a", 1)])
    assert await asyncio.wait_for(channel.queue.get(), 5) == TextDelta("a", 1)


async def test_buffered_channel_holds_deltas_until_the_end() -> None:
    channel = EventChannel(asyncio.get_running_loop(), buffered=True)
    await from_worker(channel, [TextDelta("a", 1), TextDelta("b", 1)])
    # Whatever the worker handed over is already queued: it ran before the join returned.
    assert channel.queue.empty()
    await from_worker(channel, [END])
    completion = await collect(consume(channel, lambda: None), GenerationParams())
    assert (completion.text, completion.completion_tokens) == ("ab", 2)


async def test_buffered_channel_delivers_an_error() -> None:
    channel = EventChannel(asyncio.get_running_loop(), buffered=True)
    await from_worker(channel, [TextDelta("a", 1), GenerationTimeout("too slow")])
    with pytest.raises(GenerationTimeout):
        await collect(consume(channel, lambda: None), GenerationParams())
