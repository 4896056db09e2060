"""A sampled token's log probability and the likeliest tokens at its step, as a local
backend reports them when a request asks for ``logprobs``.

Decision: the model's own distribution (a log-softmax of the raw logits), not the one the
token was drawn from after temperature, top-k and top-p. It is what vLLM reports by
default (``logprobs_mode="raw_logprobs"``) and what OpenAI's values behave like: the same
text gets the same log probabilities whatever the sampling parameters, so they compare
across requests (scoring, calibration), and a token that top-k or top-p excluded still has
its real probability instead of minus infinity. Greedy decoding takes the argmax, which a
log-softmax keeps, so at temperature 0 the sampled token is always the first of ``top``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from llmserver.domain.inference import TokenLogprob, TopLogprob


class TokenTexts:
    """Each token id's text on its own (decoded once, then remembered: the vocabulary
    bounds the memory), as a log-probability entry names it."""

    def __init__(self, decode: Callable[[Sequence[int]], str]) -> None:
        self._decode = decode
        self._texts: dict[int, str] = {}

    def __call__(self, token: int) -> str:
        text = self._texts.get(token)
        if text is None:
            text = self._texts[token] = self._decode([token])
        return text


def token_logprob(
    token: int, logprob: float, top: Sequence[tuple[int, float]], text: TokenTexts
) -> TokenLogprob:
    """The entry for ``token`` of log probability ``logprob``, with its step's ``top``
    tokens (id and log probability, likeliest first)."""
    return TokenLogprob(
        text(token), _finite(logprob), tuple(TopLogprob(text(t), _finite(lp)) for t, lp in top)
    )


LOGPROB_FLOOR = -9999.0
"""What an impossible token's log probability (minus infinity) is reported as: JSON has
no infinity, and vLLM sends this value for it."""


def _finite(logprob: float) -> float:
    return max(float(logprob), LOGPROB_FLOOR)
