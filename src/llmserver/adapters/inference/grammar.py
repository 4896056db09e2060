"""Constrained decoding: a grammar per constrained row masks the tokens that would break it.

Engine: llguidance, chosen by measurement against xgrammar and outlines-core (2026-12-01,
random logits driving 20 generations of a nested schema with enum, integer range, bounded
strings, a pattern and an array; demo tokenizers of 1,024 and 4,096 tokens):

- llguidance: 20/20 outputs parsed by ``json.loads`` and validated; mask 140-190 us a
  step (median), schema 70-310 ms to first mask. No dependencies.
- xgrammar: 9/20 and 12/20: its JSON grammar lets raw control characters into strings,
  which JSON forbids (``json.loads`` and pydantic refuse them). 60-110 us a step.
  Requires torch (the lock would pull PyPI's CUDA build) and triton (~1 GB).
- outlines-core: 5/20 and 3/20 (the same failure); 60-80 us a step.

Only llguidance's output was valid every time, which is the point. Its own torch helper
for applying a mask took ~25 ms a step on CPU, so the mask is unpacked with numpy here, and
each backend applies it to its own logits (torch: ``torch_sampling``; MLX: ``mlx_sampling``).

Compiling: a schema becomes a matcher on one thread per model (a hostile schema waits for
its own compile, never on the event loop nor on another model's), bounded by llguidance's
parser limits and by ``COMPILE_TIMEOUT_S``; compiled matchers are kept in a small LRU and
each row decodes with a copy (~35 us): the ``n`` choices of one request, one each. JSON
is generated compact (no free whitespace), so a model cannot spend its tokens on blanks.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import llguidance
import llguidance.hf
import numpy as np
import numpy.typing as npt

from llmserver.domain.errors import InvalidRequest
from llmserver.domain.inference import StreamEvent, close_stream
from llmserver.domain.output_constraint import OutputConstraint

COMPILE_TIMEOUT_S = 10.0
"""How long a request waits for its schema's grammar before it gets a 400."""
CACHED_GRAMMARS = 32
# The library's defaults, halved: far above what a real answer format needs (a 4,096-token
# vocabulary compiles a 100-property schema within them), and each bounds compile or step time.
_LIMITS = llguidance.LLParserLimits(
    initial_lexer_fuel=500_000,
    step_lexer_fuel=100_000,
    max_lexer_states=125_000,
    max_grammar_size=250_000,
    verbose_errors=False,
)


class RowGrammar:
    """One constrained row's matcher: masks its logits, follows its tokens."""

    def __init__(self, matcher: Any, source: str) -> None:
        self._matcher = matcher
        self._source = source

    def allowed(self, width: int) -> npt.NDArray[np.bool_]:
        """Which of a row's ``width`` logits the grammar allows next. A grammar that fails
        part-way (a step past the parser's limits) is the schema's doing: a 400."""
        if self._matcher.is_error():
            raise InvalidRequest(
                f"The {self._source} schema could not be enforced: {self._matcher.get_error()}",
                param=self._source,
            )
        bits = np.frombuffer(self._matcher.compute_bitmask(), dtype=np.uint8)
        return np.unpackbits(bits, bitorder="little")[:width].astype(bool)

    def accept(self, token: int) -> None:
        if not self._matcher.consume_token(token):
            raise RuntimeError(f"the output grammar refused a token: {self._matcher.get_error()}")


class CompiledGrammar:
    """One request's compiled constraint: a fresh matcher for each of its rows (``FREE``:
    none, the rows of free text)."""

    def __init__(self, matcher: Any, source: str) -> None:
        self._matcher = matcher
        self._source = source

    def row(self) -> RowGrammar | None:
        if self._matcher is None:
            return None
        return RowGrammar(self._matcher.deep_copy(), self._source)


FREE = CompiledGrammar(None, "")


class Grammars:
    """A model's compiled grammars, and the thread that compiles them."""

    def __init__(
        self, tokenizer: Any, *, vocab_size: int, eos: Collection[int], model_id: str
    ) -> None:
        self._hf_tokenizer = tokenizer
        self._vocab_size = vocab_size
        self._eos = sorted(eos)
        self._tokenizer: Any = None  # built on the compile thread at first use
        # By the schema alone: the same schema named otherwise, strict or not, or from tools
        # rather than response_format, compiles to the same grammar.
        self._compiled: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"grammar-{model_id}")

    @classmethod
    def of_model(cls, model: Any, tokenizer: Any, eos: Collection[int], model_id: str) -> Grammars:
        """For a transformers model: its masks cover its logits, which may be wider than
        its tokenizer's vocabulary (the rest is never allowed)."""
        # out_features, not weight.shape: an int8 model's head is a dynamic quantized
        # Linear, whose weight is a method.
        width = int(model.get_output_embeddings().out_features)
        return cls(tokenizer, vocab_size=width, eos=eos, model_id=model_id)

    @classmethod
    def of_mlx_model(
        cls, model: Any, tokenizer: Any, eos: Collection[int], model_id: str
    ) -> Grammars:
        """For an mlx-lm model: its masks cover its logits, as wide as its configured
        vocabulary (the tokenizer's own vocabulary where its config names none)."""
        args = getattr(model, "args", None)
        width = int(getattr(args, "vocab_size", 0) or len(tokenizer))
        return cls(tokenizer, vocab_size=width, eos=eos, model_id=model_id)

    async def compiled(self, constraint: OutputConstraint | None) -> CompiledGrammar:
        """``constraint``'s grammar, whose ``row`` gives each row its own matcher; ``FREE``
        for free text. Raises ``InvalidRequest`` for a schema that cannot be compiled (in
        time)."""
        if constraint is None:
            return FREE
        schema = constraint.grammar_schema
        matcher: Any = self._compiled.get(schema)
        if matcher is None:
            work = asyncio.get_running_loop().run_in_executor(
                self._thread, self._compile, schema, constraint.source
            )
            try:
                matcher = await asyncio.wait_for(work, COMPILE_TIMEOUT_S)
            except TimeoutError:
                raise InvalidRequest(
                    f"The {constraint.source} schema did not compile within "
                    f"{COMPILE_TIMEOUT_S:g} s; simplify it.",
                    param=constraint.source,
                ) from None
            self._compiled[schema] = matcher
            if len(self._compiled) > CACHED_GRAMMARS:
                self._compiled.popitem(last=False)
        else:
            self._compiled.move_to_end(schema)
        return CompiledGrammar(matcher, constraint.source)

    def stream(
        self,
        constraint: OutputConstraint | None,
        start: Callable[[CompiledGrammar], AsyncIterator[StreamEvent]],
    ) -> AsyncIterator[StreamEvent]:
        """``start(FREE)`` now for free text, else ``start(grammar)`` once it is compiled
        (on first iteration: a backend's ``stream`` is synchronous)."""
        if constraint is None:
            return start(FREE)
        return self._stream_later(constraint, start)

    async def _stream_later(
        self,
        constraint: OutputConstraint,
        start: Callable[[CompiledGrammar], AsyncIterator[StreamEvent]],
    ) -> AsyncIterator[StreamEvent]:
        events = start(await self.compiled(constraint))
        try:
            async for event in events:
                yield event
        finally:
            await close_stream(events)

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)

    def _compile(self, schema: str, source: str) -> Any:
        if self._tokenizer is None:
            self._tokenizer = llguidance.hf.from_tokenizer(
                self._hf_tokenizer, n_vocab=self._vocab_size, eos_token=self._eos
            )
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(
                schema, defaults={"whitespace_flexible": False}
            )
        except ValueError as exc:
            raise InvalidRequest(f"Invalid {source} schema: {exc}", param=source) from None
        matcher = llguidance.LLMatcher(self._tokenizer, grammar, log_level=0, limits=_LIMITS)
        if matcher.is_error():
            raise InvalidRequest(
                f"The {source} schema cannot be enforced: {matcher.get_error()}",
                param=source,
            )
        return matcher
