"""Token ids to stream events: finish reasons, stop strings and token accounting."""

from __future__ import annotations

from collections.abc import Sequence

from llmserver.adapters.inference.generation import TokenEvents
from llmserver.domain.inference import FinishReason, GenerationParams, StreamEnd, TextDelta

EOS = 0


def decode(ids: Sequence[int]) -> str:
    """Each id is one byte; the EOS id decodes to nothing, like a skipped special token."""
    return bytes(i for i in ids if i != EOS).decode("utf-8", errors="replace")


def run(text: bytes, params: GenerationParams, *, eos_after: bool = False) -> list[object]:
    events = TokenEvents(decode, params, prompt_tokens=5, eos=frozenset({EOS}))
    out: list[object] = []
    for token in [*text, *([EOS] if eos_after else [])]:
        new, finished = events.push(token)
        out += new
        if finished:
            break
    return out


def test_length_flushes_everything_and_counts_each_token() -> None:
    out = run("hé!".encode(), GenerationParams(max_tokens=4))
    assert out == [
        TextDelta("h", tokens=1),
        TextDelta("é", tokens=2),
        TextDelta("!", tokens=1),
        StreamEnd(FinishReason.LENGTH, prompt_tokens=5, completion_tokens=4),
    ]


def test_eos_ends_with_stop() -> None:
    out = run(b"ok", GenerationParams(max_tokens=10), eos_after=True)
    assert out[-1] == StreamEnd(FinishReason.STOP, prompt_tokens=5, completion_tokens=3)
    assert "".join(e.text for e in out if isinstance(e, TextDelta)) == "ok"


def test_stop_string_is_never_emitted() -> None:
    out = run(b"abc##def", GenerationParams(max_tokens=20, stop=("##",)))
    assert out == [
        TextDelta("a", tokens=1),
        TextDelta("b", tokens=1),
        TextDelta("c", tokens=1),
        StreamEnd(FinishReason.STOP, prompt_tokens=5, completion_tokens=5),
    ]


def test_text_held_for_a_possible_stop_is_released_at_the_end() -> None:
    out = run(b"ab#", GenerationParams(max_tokens=3, stop=("##",)))
    assert out == [
        TextDelta("a", tokens=1),
        TextDelta("b", tokens=1),
        TextDelta("#", tokens=1),
        StreamEnd(FinishReason.LENGTH, prompt_tokens=5, completion_tokens=3),
    ]
