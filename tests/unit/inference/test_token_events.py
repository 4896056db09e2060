"""Token ids to stream events: finish reasons, stop strings and token accounting."""

from __future__ import annotations

from collections.abc import Sequence

from llmserver.adapters.inference.generation import TokenEvents, choice_events
from llmserver.domain.inference import (
    Assembly,
    Choice,
    Completion,
    FinishReason,
    GenerationParams,
    StreamEnd,
    TextDelta,
    TokenLogprob,
)
from llmserver.domain.tools import ToolCall, ToolCallDelta

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


def entry(token: int) -> TokenLogprob:
    return TokenLogprob(decode([token]), -float(token) / 100)


def test_logprobs_go_out_with_the_text_their_tokens_complete() -> None:
    """A character split over two tokens goes out once whole, with both entries; the end of
    sequence has none (it adds no text)."""
    events = TokenEvents(decode, GenerationParams(logprobs=2), 5, frozenset({EOS}))
    out: list[object] = []
    for token in [*"hé".encode(), EOS]:
        out += events.push(token, entry(token))[0]
    h, e1, e2 = (entry(t) for t in "hé".encode())
    assert out == [
        TextDelta("h", tokens=1, logprobs=(h,)),
        TextDelta("é", tokens=2, logprobs=(e1, e2)),
        StreamEnd(FinishReason.STOP, prompt_tokens=5, completion_tokens=4),
    ]


def test_logprobs_of_text_a_stop_string_cut_still_go_out() -> None:
    events = TokenEvents(decode, GenerationParams(logprobs=0, stop=("#",)), 5, frozenset({EOS}))
    out: list[object] = []
    for token in b"a#":
        out += events.push(token, entry(token))[0]
    assert out == [
        TextDelta("a", tokens=1, logprobs=(entry(ord("a")),)),
        TextDelta("", tokens=1, logprobs=(entry(ord("#")),)),
        StreamEnd(FinishReason.STOP, prompt_tokens=5, completion_tokens=2),
    ]


def test_choices_end_once_all_have_ended_in_any_order() -> None:
    params = GenerationParams(max_tokens=3, n=3, seed=7)
    rows = choice_events(decode, params, 5, frozenset({EOS}))
    assert [own.seed for own, _ in rows] == [7, 8, 9]
    (_, first), (_, second), (_, third) = rows
    assert second.push(EOS) == ([], True)  # no StreamEnd while others still run
    assert first.push(ord("x")) == ([TextDelta("x", index=0)], False)
    assert third.push(ord("y"))[0] == [TextDelta("y", index=2)]
    assert third.push(EOS)[0] == []
    events, done = first.push(EOS)
    assert done
    assert events == [
        StreamEnd(
            FinishReason.STOP,
            prompt_tokens=5,
            completion_tokens=1 + 2 + 2,
            more=(FinishReason.STOP, FinishReason.STOP),
        )
    ]


def test_an_assembly_gathers_every_choice() -> None:
    parts = Assembly()
    parts.add(TextDelta("a", index=0, logprobs=(entry(97),)))
    parts.add(TextDelta("b", index=2))
    parts.add(TextDelta("c", index=0))
    end = StreamEnd(FinishReason.LENGTH, 5, 9, more=(FinishReason.STOP, FinishReason.LENGTH))
    assert parts.completion(end, logprobs=True) == Completion(
        text="ac",
        prompt_tokens=5,
        completion_tokens=9,
        finish_reason=FinishReason.LENGTH,
        logprobs=(entry(97),),
        more=(Choice("", FinishReason.STOP, ()), Choice("b", FinishReason.LENGTH, ())),
    )
    assert parts.completion(end, logprobs=False).logprobs is None


def test_an_assembly_gathers_the_first_choices_tool_calls() -> None:
    parts = Assembly()
    parts.add(TextDelta("x", index=0, logprobs=(entry(120),)))
    parts.add(ToolCallDelta(0, "call_1", "get", '{"a"'))
    parts.add(TextDelta("y", index=1))
    parts.add(ToolCallDelta(0, arguments=": 1}"))
    end = StreamEnd(FinishReason.TOOL_CALLS, 5, 7, cached_tokens=2, more=(FinishReason.STOP,))
    assert parts.completion(end, logprobs=True) == Completion(
        text="x",
        prompt_tokens=5,
        completion_tokens=7,
        finish_reason=FinishReason.TOOL_CALLS,
        tool_calls=(ToolCall("call_1", "get", '{"a": 1}'),),
        cached_tokens=2,
        logprobs=(entry(120),),
        more=(Choice("y", FinishReason.STOP, ()),),
    )
