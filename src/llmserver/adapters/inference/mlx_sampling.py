"""Drawing an MLX row's next token: its request's own random source, and for a constrained
row the grammar's mask (``grammar``), so constrained and free rows share a batch.

mlx-lm's ``BatchGenerator`` takes a sampler per row (``insert(samplers=...)``) and calls
each once per decode step with the row's log probabilities, a ``(1, vocabulary)`` array.
The mask goes in the sampler rather than in a logits processor (which ``insert`` takes
too): the generator reports the log probabilities it hands the sampler, so a constrained
row's ``logprobs`` stay the model's raw distribution, as on the torch backend.

The generator samples step k + 1 before it returns step k's token (it evaluates ahead),
so a grammar sampler follows its own previous draw: at each call it first feeds the token
it drew last time to the matcher (forcing that evaluation, which the running step has
made anyway), then masks. A failure there must not raise inside the generator's step,
which every row shares: it is kept (``error``) and the backend fails that row alone.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from llmserver.adapters.inference.grammar import RowGrammar
from llmserver.domain.inference import GenerationParams

Sampler = Callable[[Any], Any]


def keyed_sampler(mx: Any, params: GenerationParams) -> Sampler:
    """Temperature / top-k / top-p sampling from a PRNG key of the request's own."""
    from mlx_lm.sample_utils import apply_top_k, apply_top_p

    key = mx.random.key(params.seed if params.seed is not None else secrets.randbits(63))

    def sample(logprobs: Any) -> Any:
        nonlocal key
        key, use = mx.random.split(key)
        if params.top_k is not None and params.top_k < logprobs.shape[-1]:
            logprobs = apply_top_k(logprobs, params.top_k)
        if params.top_p < 1.0:
            logprobs = apply_top_p(logprobs, params.top_p)
        return mx.random.categorical(logprobs * (1.0 / params.temperature), key=use)

    return sample


class GrammarSampler:
    """A constrained row's sampler: ``inner`` (``None``: the likeliest token) over the
    tokens its grammar allows."""

    def __init__(self, mx: Any, grammar: RowGrammar, inner: Sampler | None) -> None:
        self._mx = mx
        self._grammar = grammar
        self._inner = inner
        self._drawn: Any = None
        """Its last draw, a lazy MLX array the matcher has not followed yet."""
        self.error: Exception | None = None
        """Why the grammar failed (then the row has to leave), else ``None``."""

    def __call__(self, logprobs: Any) -> Any:
        mx = self._mx
        if self.error is None:
            try:
                logprobs = self._masked(logprobs)
            except Exception as exc:
                self.error = exc
        drawn = mx.argmax(logprobs, axis=-1) if self._inner is None else self._inner(logprobs)
        self._drawn = drawn
        return drawn

    def _masked(self, logprobs: Any) -> Any:
        grammar = self._grammar
        if self._drawn is not None:
            grammar.accept(int(self._drawn.item()))
        allowed = self._mx.array(grammar.allowed(logprobs.shape[-1]))
        return self._mx.where(allowed, logprobs, -self._mx.inf)


def row_sampler(mx: Any, params: GenerationParams, grammar: RowGrammar | None) -> Sampler | None:
    """One row's sampler; ``None`` for a free greedy row (the generator's own argmax)."""
    inner = None if params.greedy else keyed_sampler(mx, params)
    return inner if grammar is None else GrammarSampler(mx, grammar, inner)
