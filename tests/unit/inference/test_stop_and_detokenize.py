"""The stop-string matcher and the incremental decoder, without a model."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from llmserver.adapters.inference.text import IncrementalDecoder, StopMatcher


def run(stops: Sequence[str], pieces: Sequence[str]) -> tuple[str, bool]:
    matcher = StopMatcher(stops)
    out = []
    for piece in pieces:
        text, stopped = matcher.feed(piece)
        out.append(text)
        if stopped:
            return "".join(out), True
    return "".join(out) + matcher.flush(), False


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        (["Hello END world"], ("Hello ", True)),
        (["Hello E", "N", "D world"], ("Hello ", True)),
        (["Hello EN", "Dless"], ("Hello ", True)),
        (["Hello EN", "ough"], ("Hello ENough", False)),
        (["E", "E", "N", "D"], ("E", True)),
        (["no stop here"], ("no stop here", False)),
        (["ends with partial E"], ("ends with partial E", False)),
    ],
)
def test_stop_strings_across_pieces(pieces: list[str], expected: tuple[str, bool]) -> None:
    assert run(["END"], pieces) == expected


def test_earliest_of_several_stops_wins() -> None:
    assert run(["world", "lo w"], ["hel", "lo wor", "ld"]) == ("hel", True)


def test_partial_text_is_held_back_until_decided() -> None:
    matcher = StopMatcher(["\n\n"])
    assert matcher.feed("line\n") == ("line", False)
    assert matcher.feed("more") == ("\nmore", False)
    assert matcher.feed("\n") == ("", False)
    assert matcher.feed("\n") == ("", True)


def test_no_stops_passes_text_through() -> None:
    assert StopMatcher([]).feed("abc") == ("abc", False)
    assert StopMatcher([""]).feed("abc") == ("abc", False)


def _utf8_decode(ids: Sequence[int]) -> str:
    """A byte-level 'tokenizer': each id is one byte."""
    return bytes(ids).decode("utf-8", errors="replace")


def test_decoder_never_splits_a_utf8_character() -> None:
    decoder = IncrementalDecoder(_utf8_decode)
    deltas = [decoder.push(b) for b in "aé東🙂z".encode()]
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) + decoder.flush() == "aé東🙂z"
    assert deltas[:2] == ["a", ""]


def test_decoder_flush_releases_an_incomplete_tail() -> None:
    decoder = IncrementalDecoder(_utf8_decode)
    assert decoder.push(ord("x")) == "x"
    assert decoder.push(0xE6) == ""
    assert decoder.flush() == "\ufffd"
