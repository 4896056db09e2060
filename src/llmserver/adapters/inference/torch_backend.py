"""The torch backend: a transformers causal LM with continuous batching of our own.

Decision: a small step loop of our own in one dedicated worker thread, not transformers'
continuous-batching manager. Speed does not decide it (in a one-off comparison the manager
reached 4.2x and our loop 4.8x at 8 concurrent requests; ``make bench`` measures our loop
against raw batched ``generate``, bench/results/inference.md). Semantics do: the manager
samples globally and rejects a per-request ``seed``, ignores stop strings and never
delivers a final event for a cancelled request. Our loop keeps one ``torch.Generator``
per row (the same seed and request give the same text) and, for a constrained row
(``response_format``), one grammar that masks its logits (``grammar``), so constrained
and free rows share a step; and it owns cancellation, timeouts and the bounded queue.

How the loop works:
- Requests wait in a bounded queue (``max_queue``; beyond it ``Overloaded``). Between
  two decode steps the worker admits waiting requests up to ``max_batch_size`` rows.
- Admitted requests are prefilled in bounded steps (``chunked_prefill``), so a long
  prompt cannot stall the running rows: new short prompts together, left-padded (a lone
  one unpadded, exactly what ``model.generate`` computes), a long one, while rows decode,
  in chunks, each in a decode step's own forward pass (``mixed_step``), which carries at
  most ``prefill_chunk_tokens`` tokens, the rows' included. A prompt that starts with
  blocks another prompt computed starts from a copy of them (``prefix_cache``). A row's
  first token is sent when its prefill completes (time to first token); its KV cache
  joins the batch's, left-padded.
- Each decode step runs every active row at once with a per-row attention mask and
  position ids. Finished, cancelled and timed-out rows leave between steps; cache
  columns that only padding uses are trimmed then.
- A request for ``n`` > 1 choices is prefilled once, as one row; when its prefill
  completes the row becomes ``n`` rows, each with a copy of its cache and a random source
  of its own, which decode in the batch like any others (``Batch.fan_out``). It waits in
  the queue until ``n`` rows are free.
- Events go back to each request's event loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import torch

from llmserver.adapters.inference.chunked_prefill import ChunkedPrefill, PrefillFailed
from llmserver.adapters.inference.generation import (
    EventChannel,
    check_request,
    choice_events,
    collect,
    consume,
    local_events,
)
from llmserver.adapters.inference.grammar import CompiledGrammar, Grammars
from llmserver.adapters.inference.kv_cache import Batch
from llmserver.adapters.inference.mixed_step import Chunk, decode_pass
from llmserver.adapters.inference.prompts import PromptEncoder
from llmserver.adapters.inference.token_logprobs import TokenTexts
from llmserver.adapters.inference.tool_parsing import template_format
from llmserver.adapters.inference.torch_loading import load_model
from llmserver.adapters.inference.torch_request import TorchRequest
from llmserver.adapters.inference.torch_sampling import logprob_of, pick_token, row_generator
from llmserver.domain.backend_ports import InferenceBackend
from llmserver.domain.errors import GenerationTimeout, InvalidRequest, Overloaded, Unavailable
from llmserver.domain.inference import (
    BackendStatus,
    Completion,
    GenerationParams,
    Prompt,
    StreamEvent,
    TokenLogprob,
)
from llmserver.domain.registry import ModelSpec
from llmserver.domain.tracing import QUEUE_WAIT, Tracer

log = logging.getLogger(__name__)


class TorchBackend(InferenceBackend):
    """One transformers model serving concurrent requests through a batching worker."""

    def __init__(
        self,
        spec: ModelSpec,
        *,
        threads: int | None = None,
        max_batch_size: int = 8,
        max_queue: int = 64,
        request_timeout_s: float = 300.0,
        prefix_cache_mb: int = 256,
        prefill_chunk_tokens: int = 32,
        tracer: Tracer | None = None,
    ) -> None:
        self._threads = threads
        self._tracer = tracer
        if threads:
            torch.set_num_threads(threads)
        self._spec = spec
        loaded = load_model(spec)
        self.tokenizer: Any = loaded.tokenizer
        self.model: Any = loaded.model
        self.device, self.dtype, self._eos = loaded.device, loaded.dtype, loaded.eos
        self._max_batch = max(1, max_batch_size)
        self._max_queue = max_queue
        self._timeout = request_timeout_s
        self._context_length = min(
            spec.context_length,
            int(getattr(self.model.config, "max_position_embeddings", spec.context_length)),
        )
        self._encode = PromptEncoder(self.tokenizer, spec.id, max_ids=self._context_length)
        self._tool_format = template_format(self.tokenizer.chat_template)
        self._grammars = Grammars.of_model(self.model, self.tokenizer, self._eos, spec.id)
        self._texts = TokenTexts(self._decode)
        self._cond = threading.Condition()
        self._waiting: collections.deque[TorchRequest] = collections.deque()
        self._batch: Batch[TorchRequest] = Batch()
        self._prefill: ChunkedPrefill[TorchRequest] = ChunkedPrefill(
            self.model,
            chunk_tokens=prefill_chunk_tokens,
            limit=self._context_length,
            pad=int(self.tokenizer.pad_token_id or 0),
            device=self.device,
            prefix_cache_bytes=prefix_cache_mb * 2**20,
        )
        self._closed = False
        self.max_rows_per_step = 0
        """The most rows one decode step has run (evidence that batching happens)."""
        self._worker = threading.Thread(
            target=self._run, name=f"torch-worker-{spec.id}", daemon=True
        )
        self._worker.start()

    # -- the port -------------------------------------------------------------------

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

    def status(self) -> BackendStatus:
        with self._cond:
            waiting, active = len(self._waiting), len(self._batch.rows)
        prefix = self._prefill.prefix_cache
        return BackendStatus(
            model_id=self._spec.id,
            ready=not self._closed,
            error="closed" if self._closed else None,
            queue_depth=waiting,
            details={
                "backend": "torch",
                "device": str(self.device),
                "dtype": str(self.dtype).removeprefix("torch."),
                "quantize": self._spec.quantize,
                "active": str(active),
                "prefilling": str(len(self._prefill)),
                "prefill_chunk_tokens": str(self._prefill.chunk_tokens),
                "mixed_steps": str(self._prefill.mixed_steps),
                "max_batch_size": str(self._max_batch),
                "max_rows_per_step": str(self.max_rows_per_step),
            },
            prefix_cache=None if prefix is None else prefix.stats(),
        )

    async def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._encode.close()
        self._grammars.close()
        await asyncio.to_thread(self._worker.join)

    # -- request side ---------------------------------------------------------------

    def _events(
        self, prompt: Prompt, params: GenerationParams, *, buffered: bool
    ) -> AsyncIterator[StreamEvent]:
        return local_events(
            prompt,
            params,
            self._tool_format,
            self._grammars,
            self._encode,
            lambda ids, grammar: self._start(ids, params, grammar, buffered),
        )

    def _start(
        self, ids: list[int], params: GenerationParams, grammar: CompiledGrammar, buffered: bool
    ) -> AsyncIterator[StreamEvent]:
        check_request(len(ids), params, self._context_length)
        if params.n > self._max_batch:
            raise InvalidRequest(
                f"n is {params.n}, but model {self._spec.id!r} decodes at most "
                f"{self._max_batch} rows at once.",
                param="n",
            )
        channel = EventChannel(asyncio.get_running_loop(), buffered=buffered)
        deadline = time.monotonic() + self._timeout
        rows = [  # each with a matcher of its own: the choices sample different tokens
            TorchRequest(
                ids, own, channel, events, deadline, row_generator(own, self.device), grammar.row()
            )
            for own, events in choice_events(self._decode, params, len(ids), self._eos)
        ]
        request, request.choices = rows[0], rows[1:]
        with self._cond:
            if self._closed:
                raise Unavailable(f"model {self._spec.id!r} is shutting down")
            if len(self._waiting) >= self._max_queue:
                raise Overloaded(
                    f"model {self._spec.id!r} is busy: {len(self._waiting)} requests are "
                    "already waiting; retry shortly"
                )
            if self._tracer is not None:
                # Before it is queued: the worker may take it at once.
                request.queued = self._tracer.start(QUEUE_WAIT)
            self._waiting.append(request)
            self._cond.notify()
        return consume(request.channel, lambda: self._forget(request))

    def _forget(self, request: TorchRequest) -> None:
        with self._cond:
            # A waiting request frees its queue slot at once; an active row leaves the
            # batch at the worker's next step.
            waiting = request in self._waiting
            if waiting:
                self._waiting.remove(request)
        if waiting and request.queued is not None:
            request.queued.end()  # it never left the queue: the worker did not end it

    def _decode(self, ids: Sequence[int]) -> str:
        text: str = self.tokenizer.decode(ids, skip_special_tokens=True)
        return text

    # -- worker side ----------------------------------------------------------------

    def _run(self) -> None:
        if self._threads:
            # OpenMP keeps the thread count per calling thread: set it where the work runs.
            torch.set_num_threads(self._threads)
        with torch.inference_mode():
            while True:
                with self._cond:
                    while (
                        not self._closed
                        and not self._waiting
                        and not self._batch.rows
                        and not self._prefill
                    ):
                        self._cond.wait()
                    if self._closed:
                        break
                    free = self._max_batch - len(self._batch.rows)
                    free -= sum(r.width for r in self._prefill.rows)
                    admitted = []
                    while self._waiting and self._waiting[0].width <= free:
                        admitted.append(self._waiting.popleft())
                        free -= admitted[-1].width
                for request in admitted:  # taken from the queue here, so ended here
                    if request.queued is not None:
                        request.queued.end()
                    self._prefill.add(request, request.prompt_ids)
                try:
                    self._drop_gone_rows()
                    riding = self._prefill.riding(len(self._batch.rows))
                    if self._prefill and riding is None:
                        self._prefill_step()
                    if self._batch.rows:
                        self._decode_step(riding)
                except Exception as exc:
                    # Only a failure no single row caused gets here: a row's own failure is
                    # its alone (``_prefill``, ``_emit``), and a decode step runs token ids
                    # the model sampled (or encoded) at positions ``check_request`` bounded,
                    # so what fails there (out of memory, a device error) fails all alike.
                    # The cache may be half-written by then: the batch is dropped whole.
                    log.exception("generation failed for model %s", self._spec.id)
                    for row in itertools.chain(self._batch.rows, self._prefill.clear()):
                        row.send(exc)
                    self._batch.keep([])
        self._fail_all(Unavailable(f"model {self._spec.id!r} was shut down"))

    def _fail_all(self, error: BaseException) -> None:
        with self._cond:
            pending = [*self._waiting, *self._batch.rows, *self._prefill.clear()]
            self._waiting.clear()
        self._batch.keep([])
        for request in pending:
            request.send(error)

    def _drop_gone_rows(self) -> None:
        now = time.monotonic()
        with self._cond:
            expired = [r for r in self._waiting if now >= r.deadline]
            for request in expired:
                self._waiting.remove(request)
        for request in expired:
            request.send(self._timeout_error())
        for request in self._prefill.remove(lambda r: r.gone or now >= r.deadline):
            if not request.gone:
                request.send(self._timeout_error())
        keep = []
        for i, row in enumerate(self._batch.rows):
            if row.gone:
                continue
            if now >= row.deadline:
                row.send(self._timeout_error())
                continue
            keep.append(i)
        self._batch.keep(keep)

    def _timeout_error(self) -> GenerationTimeout:
        return GenerationTimeout(
            f"generation on model {self._spec.id!r} took longer than {self._timeout:g}s"
        )

    def _prefill_step(self) -> None:
        """One bounded step of prefill; the rows it completes get their first tokens and
        join the batch. A failed forward pass fails only the rows it computed."""
        try:
            done = self._prefill.step(bounded=bool(self._batch.rows))
        except PrefillFailed as failed:
            error = failed.__cause__ or failed
            if not failed.rows:
                log.warning("a grouped prefill on model %s failed; one by one", self._spec.id)
            for row in failed.rows:
                log.error("prefill failed for a request on model %s", self._spec.id, exc_info=error)
                row.send(error)
            return
        self._join(done)

    def _join(self, done: tuple[Batch[TorchRequest], torch.Tensor] | None) -> None:
        """Rows whose prefill ``done`` completed: their first tokens, then into the batch."""
        if done is None:
            return
        group, logits = done
        if any(row.choices for row in group.rows):
            logits = logits[group.fan_out([[row, *row.choices] for row in group.rows])]
        for row in group.rows:
            row.length = len(row.prompt_ids)
        group.keep(self._emit(logits, group.rows))
        self._batch.join(group)

    def _decode_step(self, riding: Chunk | None) -> None:
        """Every row's next token, with ``riding`` (a prompt chunk) in the same pass."""
        batch, rows = self._batch, self._batch.rows
        self.max_rows_per_step = max(self.max_rows_per_step, len(rows))
        tokens, positions = [r.last_token for r in rows], [r.length for r in rows]
        logits, after = decode_pass(self.model, batch, tokens, positions, riding)
        for row in rows:
            row.length += 1
        batch.keep(self._emit(logits, rows))
        if riding is not None:
            self._join(self._prefill.rode(riding, after))

    def _emit(self, logits: torch.Tensor, rows: Sequence[TorchRequest]) -> list[int]:
        """Take each row's next token and send what it completes; the rows that go on.

        A row whose sampling or decoding raises gets the error and leaves; the rows
        batched with it go on untouched.
        """
        logits = logits.float()
        greedy = logits.argmax(dim=-1).tolist()
        keep = []
        for i, row in enumerate(rows):
            try:
                token = pick_token(
                    logits[i], int(greedy[i]), row.params, row.generator, row.grammar
                )
                top = row.params.logprobs
                logprob = None if top is None else logprob_of(logits[i], token, top, self._texts)
                if self._advance(row, token, logprob):
                    keep.append(i)
            except Exception as exc:
                log.exception("generation failed for a request on model %s", self._spec.id)
                row.send(exc)
        return keep

    def _advance(self, row: TorchRequest, token: int, logprob: TokenLogprob | None) -> bool:
        """Record one sampled token and send what it completes; False when the row is done."""
        if row.gone:
            return False
        if row.grammar is not None:
            row.grammar.accept(token)
        row.last_token = token
        events, finished = row.events.push(token, logprob)
        for event in events:
            row.send(event)
        return not finished
