"""The upstream SSE reader gives the same events however the body is cut into chunks."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from llmserver.adapters.inference.http_upstream_answers import SseEvents

EVENTS = [b'{"a":1}', b'{"b":\n"y"}', b"[DONE]"]


def body(newline: bytes) -> bytes:
    lines = [
        b": a comment",
        b"data: " + EVENTS[0],
        b"",
        b"event: message",
        b'data:{"b":',
        b'data: "y"}',
        b"id: 7",
        b"",
        b"data: " + EVENTS[2],
        b"",
    ]
    return newline.join(lines) + newline


def events(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    parser = SseEvents()
    found: list[bytes] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        if cut > start:
            found += parser.feed(data[start:cut])
            start = cut
    return found + parser.end()


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_single_cut_gives_the_same_events(newline: bytes) -> None:
    data = body(newline)
    for cut in range(len(data) + 1):
        assert events(data, [cut]) == EVENTS, (newline, cut)


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_byte_by_byte_and_random_chunkings_give_the_same_events(newline: bytes) -> None:
    data = body(newline)
    assert events(data, range(len(data))) == EVENTS
    rng = random.Random(7)
    for _ in range(300):
        cuts = rng.sample(range(len(data)), rng.randint(1, 12))
        assert events(data, cuts) == EVENTS, cuts


def test_multi_line_data_is_joined_and_a_last_event_without_blank_line_counts() -> None:
    data = b"data: one\ndata: two\n\ndata: tail"

    assert events(data, [5, 13]) == [b"one\ntwo", b"tail"]


def test_a_long_line_in_many_chunks_is_one_event() -> None:
    payload = b"x" * 100_000
    data = b"data: " + payload + b"\n\n"

    assert events(data, range(0, len(data), 1000)) == [payload]
