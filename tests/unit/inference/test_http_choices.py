"""An upstream's whole answer read into the ``n`` choices a request asked for."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmserver.adapters.inference.http_choices import whole_choices
from llmserver.adapters.inference.http_upstream_answers import parse_answer
from llmserver.domain.errors import UpstreamError
from llmserver.domain.inference import FinishReason, GenerationParams

TWO = GenerationParams(max_tokens=8, n=2)


def _choices(*choices: dict[str, Any], params: GenerationParams = TWO) -> list[Any]:
    answer = parse_answer(json.dumps({"choices": list(choices)}), "remote", "completion")
    return whole_choices(answer, params, "remote")


def _choice(index: int, text: str, finish: str | None = "stop", **more: Any) -> dict[str, Any]:
    return {"index": index, "message": {"content": text, **more}, "finish_reason": finish}


def test_choices_come_in_index_order_whatever_order_the_upstream_sent() -> None:
    read = _choices(_choice(1, "second", "length"), _choice(0, "first"))
    assert [(c.text, c.finish_reason) for c in read] == [
        ("first", FinishReason.STOP),
        ("second", FinishReason.LENGTH),
    ]


def test_choices_past_n_are_left_out_and_a_repeated_index_is_its_last() -> None:
    read = _choices(_choice(0, "old"), _choice(1, "b"), _choice(2, "extra"), _choice(0, "a"))
    assert [c.text for c in read] == ["a", "b"]


@pytest.mark.parametrize(
    "choices",
    [
        [_choice(0, "only one")],
        [_choice(0, "a"), _choice(1, "b", None)],
        [_choice(0, "a", None), _choice(1, "b")],
        # The index that counts (the last) has none, though an earlier one had.
        [_choice(0, "a"), _choice(1, "b"), _choice(1, "b again", None)],
    ],
)
def test_each_choice_asked_for_needs_a_finish_reason(choices: list[dict[str, Any]]) -> None:
    with pytest.raises(
        UpstreamError,
        match=r"^the upstream of model 'remote' answered without a finish reason for each "
        r"of its 2 choices$",
    ):
        _choices(*choices)


def test_a_choice_with_calls_ends_in_tool_calls_and_keeps_them() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    read = _choices(_choice(0, ""), _choice(1, "", "stop", tool_calls=[call]))
    assert read[0].tool_calls == ()
    assert read[0].finish_reason is FinishReason.STOP
    assert [(c.id, c.name, c.arguments) for c in read[1].tool_calls] == [("call_1", "f", "{}")]
    assert read[1].finish_reason is FinishReason.TOOL_CALLS


def test_log_probabilities_are_read_only_when_asked_for() -> None:
    entry = {"token": "a", "logprob": -0.5, "top_logprobs": []}
    sent = {**_choice(0, "a"), "logprobs": {"content": [entry]}}
    assert _choices(sent, params=GenerationParams(max_tokens=8))[0].logprobs is None
    asked = _choices(sent, params=GenerationParams(max_tokens=8, logprobs=0))[0].logprobs
    assert asked is not None
    assert [(t.token, t.logprob) for t in asked] == [("a", -0.5)]
