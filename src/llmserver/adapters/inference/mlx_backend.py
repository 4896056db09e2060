"""The MLX backend: mlx-lm models (Apple silicon; also MLX's CPU build on Linux).

Concurrent requests share one ``mlx_lm`` ``BatchGenerator`` (continuous batching: rows
join between decode steps, up to ``max_batch_size``; prompts are prefilled in chunks between
the running rows' steps), driven by one dedicated worker thread, the only one touching MLX.
On MLX's CPU device a model runs one row at a time unless its spec sets ``max_batch_size``:
there 8 concurrent requests decoded 0.8x the tokens/s of one (``make bench``, BENCH=mlx),
so batching would only stretch every request's latency.
Each sampled request draws from a PRNG key of its own (split once per token), not MLX's
global random state, so a request's ``seed`` reproduces whatever else shares its batch.
The queue in front is bounded like the torch backend's, and a cancelled or timed-out
request leaves the batch before the next step. A request for ``n`` > 1 choices is ``n``
rows (each prefilled on its own: the generator has no way to copy one row's cache), and
log probabilities come from the generator's own, the model's raw distribution as the
torch backend reports it (``token_logprobs``). A constrained row (``response_format``, a
forced tool call) samples under the torch backend's grammars (``grammar``), applied by its
own sampler in the shared batch (``mlx_sampling``); each of ``n`` choices has its matcher.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from llmserver.adapters.inference.generation import (
    EventChannel,
    TokenEvents,
    check_request,
    choice_events,
    collect,
    consume,
    local_events,
)
from llmserver.adapters.inference.grammar import CompiledGrammar, Grammars, RowGrammar
from llmserver.adapters.inference.mlx_sampling import GrammarSampler, Sampler, row_sampler
from llmserver.adapters.inference.prompts import PromptEncoder
from llmserver.adapters.inference.token_logprobs import TokenTexts, token_logprob
from llmserver.adapters.inference.tool_parsing import template_format
from llmserver.domain.backend_ports import InferenceBackend
from llmserver.domain.errors import GenerationTimeout, Overloaded, Unavailable
from llmserver.domain.inference import (
    BackendStatus,
    Completion,
    GenerationParams,
    Prompt,
    StreamEvent,
    TokenLogprob,
)
from llmserver.domain.registry import ModelSpec
from llmserver.domain.tracing import QUEUE_WAIT, Span, Tracer

log = logging.getLogger(__name__)

MISSING_MLX = (
    'the MLX backend needs mlx-lm and mlx: pip install "llmserver[mlx]" '
    "(on Linux this brings MLX's CPU build)"
)


@dataclass(eq=False, slots=True)
class _Job:
    ids: list[int]
    params: GenerationParams
    channel: EventChannel
    events: TokenEvents
    deadline: float
    grammar: RowGrammar | None
    """Its output constraint's matcher (its own, also among ``n`` choices); ``None`` for
    free text."""
    queued: Span | None = None
    """Its queue-wait span (tracing on), ended when it leaves the queue."""
    sampler: Sampler | None = None
    """Its sampler in the generator (from when it is admitted)."""


class MlxBackend(InferenceBackend):
    def __init__(
        self,
        spec: ModelSpec,
        *,
        max_batch_size: int = 8,
        max_queue: int = 64,
        request_timeout_s: float = 300.0,
        tracer: Tracer | None = None,
    ) -> None:
        self._tracer = tracer
        try:
            import mlx.core as mx
            import mlx_lm
            from mlx_lm.generate import BatchGenerator
        except ImportError as exc:
            raise RuntimeError(MISSING_MLX) from exc
        self._mx: Any = mx
        self._batch_generator: Any = BatchGenerator
        self._spec = spec
        loaded: Any = mlx_lm.load(spec.source)
        self._model, wrapper = loaded[0], loaded[1]
        self.tokenizer: Any = wrapper._tokenizer
        self._eos = frozenset(int(i) for i in wrapper.eos_token_ids)
        self._encode = PromptEncoder(self.tokenizer, spec.id, max_ids=spec.context_length)
        self._tool_format = template_format(self.tokenizer.chat_template)
        self._grammars = Grammars.of_mlx_model(self._model, self.tokenizer, self._eos, spec.id)
        self._texts = TokenTexts(self._decode)
        self._context_length = spec.context_length
        on_cpu = mx.default_device() == mx.cpu
        self._max_batch = 1 if on_cpu and spec.max_batch_size is None else max(1, max_batch_size)
        self._max_queue = max_queue
        self._timeout = request_timeout_s
        self._cond = threading.Condition()
        self._waiting: collections.deque[_Job] = collections.deque()
        self._active: dict[int, _Job] = {}
        """Rows in the batch, by the generator's uid (the worker's alone)."""
        self._closed = False
        self.max_rows_per_step = 0
        """The most rows one decode step has run (evidence that batching happens)."""
        self._worker = threading.Thread(target=self._run, name=f"mlx-{spec.id}", daemon=True)
        self._worker.start()

    @property
    def model_id(self) -> str:
        return self._spec.id

    async def count_tokens(self, prompt: Prompt) -> int:
        return await self._encode.count(prompt)

    def min_prompt_tokens(self, prompt: Prompt) -> int:
        return self._encode.floor(prompt)

    async def generate(self, prompt: Prompt, params: GenerationParams) -> Completion:
        return await collect(self._events(prompt, params, buffered=True), params)

    def stream(self, prompt: Prompt, params: GenerationParams) -> AsyncIterator[StreamEvent]:
        return self._events(prompt, params, buffered=False)

    def _events(
        self, prompt: Prompt, params: GenerationParams, *, buffered: bool
    ) -> AsyncIterator[StreamEvent]:
        return local_events(
            prompt,
            params,
            self._tool_format,
            self._grammars,
            self._encode,
            lambda ids, grammar: self._start(ids, params, grammar, buffered=buffered),
        )

    def _start(
        self,
        ids: list[int],
        params: GenerationParams,
        grammar: CompiledGrammar,
        *,
        buffered: bool,
    ) -> AsyncIterator[StreamEvent]:
        check_request(len(ids), params, self._context_length)
        channel = EventChannel(asyncio.get_running_loop(), buffered=buffered)
        deadline = time.monotonic() + self._timeout
        jobs = [
            _Job(ids, own, channel, events, deadline, grammar.row())
            for own, events in choice_events(self._decode, params, len(ids), self._eos)
        ]
        with self._cond:
            if self._closed:
                raise Unavailable(f"model {self._spec.id!r} is shutting down")
            if len(self._waiting) >= self._max_queue:
                raise Overloaded(
                    f"model {self._spec.id!r} is busy: {len(self._waiting)} requests are "
                    "already waiting; retry shortly"
                )
            for job in jobs:
                if self._tracer is not None:
                    job.queued = self._tracer.start(QUEUE_WAIT)
                self._waiting.append(job)
            self._cond.notify()
        return consume(channel, lambda: self._leave_queue(jobs))

    def status(self) -> BackendStatus:
        with self._cond:
            waiting, active = len(self._waiting), len(self._active)
        return BackendStatus(
            model_id=self._spec.id,
            ready=not self._closed,
            error="closed" if self._closed else None,
            queue_depth=waiting,
            details={
                "backend": "mlx",
                "active": str(active),
                "max_batch_size": str(self._max_batch),
                "max_rows_per_step": str(self.max_rows_per_step),
            },
        )

    async def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._encode.close()
        self._grammars.close()
        await asyncio.to_thread(self._worker.join)

    def _leave_queue(self, jobs: list[_Job]) -> None:
        """A consumer that leaves frees its queue slots at once; a row leaves at the next
        step."""
        with self._cond:
            waiting = [job for job in jobs if job in self._waiting]
            for job in waiting:
                self._waiting.remove(job)
        for job in waiting:
            if job.queued is not None:
                job.queued.end()

    def _decode(self, ids: Sequence[int]) -> str:
        text: str = self.tokenizer.decode(ids, skip_special_tokens=True)
        return text

    # -- worker side ----------------------------------------------------------------

    def _new_generator(self) -> Any:
        # No stop tokens and per-row max_tokens: TokenEvents decides when a row ends
        # (EOS, stop strings, length), exactly as for the torch backend.
        return self._batch_generator(
            self._model,
            completion_batch_size=self._max_batch,
            prefill_batch_size=self._max_batch,
        )

    def _run(self) -> None:
        gen = self._new_generator()
        while True:
            with self._cond:
                while not self._closed and not self._waiting and not self._active:
                    self._cond.wait()
                if self._closed:
                    break
                free = self._max_batch - len(self._active)
                admitted = [self._waiting.popleft() for _ in range(min(free, len(self._waiting)))]
            for job in admitted:
                if job.queued is not None:
                    job.queued.end()
            try:
                self._drop_gone_rows(gen)
                if admitted:
                    self._admit(gen, admitted)
                if self._active:
                    self._step(gen)
            except Exception as exc:
                # A failed step may leave the batch half-advanced: every row in it gets the
                # error and the generator starts afresh.
                log.exception("generation failed for model %s", self._spec.id)
                with self._cond:
                    active = [*self._active.values()]
                    self._active.clear()
                # Admitted jobs the generator refused never became rows: they fail too.
                failed = [*active, *(j for j in admitted if all(j is not a for a in active))]
                for job in failed:
                    job.channel.send(exc)
                gen.close()
                gen = self._new_generator()
        gen.close()
        error = Unavailable(f"model {self._spec.id!r} was shut down")
        with self._cond:
            pending = [*self._waiting, *self._active.values()]
            self._waiting.clear()
            self._active.clear()
        for job in pending:
            job.channel.send(error)

    def _admit(self, gen: Any, jobs: list[_Job]) -> None:
        for job in jobs:
            job.sampler = row_sampler(self._mx, job.params, job.grammar)
        uids = gen.insert(
            [j.ids for j in jobs],
            max_tokens=[j.params.max_tokens for j in jobs],
            samplers=[j.sampler for j in jobs],
        )
        with self._cond:
            self._active.update(zip(uids, jobs, strict=True))

    def _drop_gone_rows(self, gen: Any) -> None:
        now = time.monotonic()
        with self._cond:
            expired = [j for j in self._waiting if now >= j.deadline]
            for job in expired:
                self._waiting.remove(job)
            gone = {
                uid: job
                for uid, job in self._active.items()
                if job.channel.cancelled or now >= job.deadline
            }
            for uid in gone:
                del self._active[uid]
        if gone:
            gen.remove(list(gone))
        for job in [*expired, *gone.values()]:
            if not job.channel.cancelled:
                job.channel.send(
                    GenerationTimeout(
                        f"generation on model {self._spec.id!r} took longer than {self._timeout:g}s"
                    )
                )

    def _step(self, gen: Any) -> None:
        self.max_rows_per_step = max(self.max_rows_per_step, len(self._active))
        _prompt_progress, responses = gen.next()
        out: list[tuple[_Job, list[StreamEvent]]] = []
        finished = []
        for response in responses:
            job = self._active.get(response.uid)
            if job is None:
                continue
            try:
                if isinstance(job.sampler, GrammarSampler) and job.sampler.error is not None:
                    raise job.sampler.error  # the grammar failed this row: it alone leaves
                token = int(response.token)
                top = job.params.logprobs
                logprob = None if top is None else self._logprob(response.logprobs, token, top)
                events, done = job.events.push(token, logprob)
            except Exception as exc:  # decoding this row's text: its failure alone
                log.exception("generation failed for a request on model %s", self._spec.id)
                events, done = [], True
                job.channel.send(exc)
            out.append((job, events))
            if done:
                finished.append(response.uid)
        with self._cond:  # before the final events: a finished request is no longer active
            for uid in finished:
                del self._active[uid]
        for job, events in out:
            for event in events:
                job.channel.send(event)
        # The generator drops a row at its max_tokens itself; one ended by EOS or a stop
        # string is still in it.
        gen.remove(finished)

    def _logprob(self, logprobs: Any, token: int, top: int) -> TokenLogprob:
        """``token``'s entry from its step's log probabilities (an MLX vector)."""
        mx = self._mx
        best: list[tuple[int, float]] = []
        if top:
            ids = mx.argpartition(-logprobs, kth=top - 1)[:top]
            values = logprobs[ids].tolist()
            best = sorted(zip(ids.tolist(), values, strict=True), key=lambda p: -p[1])
        return token_logprob(token, logprobs[token].item(), best, self._texts)
