"""The torch embedding backend: a transformers encoder, batched across requests.

Every input of every request becomes one row in a queue. One worker thread takes up to
``max_batch_rows`` waiting rows at a time, whichever requests they belong to, and runs them
as one padded forward pass with an attention mask; pooling (mean over the real tokens, or
the first token's state) and normalisation follow in the same tensors. A request is
answered when its last row is done, so a large batch request and many small ones share
passes, and inputs that arrive while a pass runs go together into the next.

Token arrays are ids of the model's own vocabulary without special tokens (what
``tokenizer.encode(text, add_special_tokens=False)`` gives); the model's special tokens are
added around them as around a text, so a text and its ids embed alike.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from llmserver.adapters.inference.prompts import OFF_LOOP_CHARS
from llmserver.adapters.inference.torch_embedding_loading import load_encoder
from llmserver.domain.backend_ports import EmbeddingBackend
from llmserver.domain.embeddings import EmbeddingInput, Embeddings, check_dimensions
from llmserver.domain.errors import (
    GenerationTimeout,
    InputTooLong,
    InvalidRequest,
    Overloaded,
    Unavailable,
)
from llmserver.domain.inference import BackendStatus
from llmserver.domain.registry import ModelSpec, Pooling

log = logging.getLogger(__name__)

GATHER_GAP_S = 0.005
GATHER_MAX_S = 0.025
"""An idle worker that gets a row waits for more to join its pass while they keep coming
(no gap longer than ``GATHER_GAP_S``), for ``GATHER_MAX_S`` at most. Requests sent together
reach the queue apart (each is read, authorised, counted and tokenized first: about a
millisecond each on a busy 2-core machine); started on the first few, the pass leaves the
rest to a second one. There, 64 one-input all-MiniLM-L6-v2 calls took 1.5x as long in two
passes (19 + 45 rows) as in one, and a 2 ms gap still split them; with 5 ms they went in
one (``python -m bench embeddings`` measures it through the server). A lone request pays
``GATHER_GAP_S``."""

_MEMO_SIZE = 64
_MEMO_MAX_IDS = 16_384
"""Inputs tokenized when counted are kept for the embedding that follows (so each input is
tokenized once): up to ``_MEMO_SIZE`` requests, oldest out first, each of at most
``_MEMO_MAX_IDS`` ids, so requests counted and then refused (over quota) cannot make it
hold much; ``embed`` takes its entry out. Read and written on the event loop's thread
only."""


@dataclass(eq=False)
class _Job:
    """One request: its rows' ids, and its vectors as they are done."""

    rows: list[list[int]]
    dimensions: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[bytes]]
    deadline: float
    vectors: list[bytes] = field(default_factory=list)
    remaining: int = 0
    counted: bool = True
    """Whether it still counts against ``max_queue`` (until answered or skipped)."""
    gone: bool = False
    """Answered (or failed), or its caller left: its rows still waiting are skipped."""

    def __post_init__(self) -> None:
        self.vectors = [b""] * len(self.rows)
        self.remaining = len(self.rows)

    def finish(self, outcome: list[bytes] | BaseException) -> None:
        if self.gone:
            return
        self.gone = True
        # A RuntimeError: the caller's event loop is closed, nobody is listening.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(_resolve, self.future, outcome)


def _special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text's own (``[CLS]`` and ``[SEP]``
    for BERT), found around a one-word text's ids."""
    wrapped = list(tokenizer("a")["input_ids"])
    bare = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    for start in range(len(wrapped) - len(bare) + 1):
        if wrapped[start : start + len(bare)] == bare:
            return wrapped[:start], wrapped[start + len(bare) :]
    return [], []


def _resolve(future: asyncio.Future[list[bytes]], outcome: list[bytes] | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class TorchEmbeddingBackend(EmbeddingBackend):
    def __init__(
        self,
        spec: ModelSpec,
        *,
        threads: int | None = None,
        max_batch_rows: int = 64,
        max_queue: int = 64,
        request_timeout_s: float = 300.0,
    ) -> None:
        self._spec = spec
        self._threads = threads
        if threads:
            torch.set_num_threads(threads)
        loaded = load_encoder(spec)
        self.tokenizer: Any = loaded.tokenizer
        self.model: Any = loaded.model
        self.device = loaded.device
        self._pooling = loaded.pooling
        self._max_tokens = loaded.max_tokens
        self.dimensions = loaded.dimensions
        self._vocab = len(self.tokenizer)
        self._pad = int(self.tokenizer.pad_token_id or 0)
        self._prefix, self._suffix = _special_tokens(self.tokenizer)
        self._max_rows = max(1, max_batch_rows)
        self._max_queue = max_queue
        self._timeout = request_timeout_s
        self._memo: collections.OrderedDict[tuple[EmbeddingInput, ...], list[list[int]]] = (
            collections.OrderedDict()
        )
        self._cond = threading.Condition()
        self._waiting: collections.deque[tuple[_Job, int]] = collections.deque()
        self._jobs = 0
        self._closed = False
        self.forward_passes = 0
        self.embedded_inputs = 0
        self.max_requests_per_pass = 0
        """The most requests one forward pass has served (evidence of batching)."""
        self._worker = threading.Thread(
            target=self._run, name=f"torch-embed-{spec.id}", daemon=True
        )
        self._worker.start()

    # -- the port -------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        return self._spec.id

    async def count_tokens(self, inputs: Sequence[EmbeddingInput]) -> list[int]:
        key = tuple(inputs)
        rows = self._memo.get(key)
        if rows is None:
            rows = await self._rows(key)
            if sum(len(row) for row in rows) <= _MEMO_MAX_IDS:
                self._memo[key] = rows
                if len(self._memo) > _MEMO_SIZE:
                    self._memo.popitem(last=False)
        return [len(row) for row in rows]

    async def embed(self, inputs: Sequence[EmbeddingInput], dimensions: int | None) -> Embeddings:
        spec = self._spec
        check_dimensions(dimensions, self.dimensions, supported=spec.matryoshka, model=spec.id)
        key = tuple(inputs)
        rows = self._memo.pop(key, None) or await self._rows(key)
        loop = asyncio.get_running_loop()
        job = _Job(
            rows,
            dimensions or self.dimensions,
            loop,
            loop.create_future(),
            time.monotonic() + self._timeout,
        )
        self._submit(job)
        try:
            vectors = await job.future
        finally:
            job.gone = True
        return Embeddings(vectors, sum(len(row) for row in rows))

    def status(self) -> BackendStatus:
        with self._cond:
            waiting = self._jobs
        return BackendStatus(
            model_id=self._spec.id,
            ready=not self._closed,
            error="closed" if self._closed else None,
            queue_depth=waiting,
            details={
                "backend": "torch",
                "kind": "embedding",
                "device": str(self.device),
                "pooling": self._pooling.value,
                "dimensions": str(self.dimensions),
                "max_batch_rows": str(self._max_rows),
                "forward_passes": str(self.forward_passes),
                "embedded_inputs": str(self.embedded_inputs),
                "max_requests_per_pass": str(self.max_requests_per_pass),
            },
        )

    async def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        await asyncio.to_thread(self._worker.join)

    # -- request side ---------------------------------------------------------------

    async def _rows(self, inputs: tuple[EmbeddingInput, ...]) -> list[list[int]]:
        """The inputs' ids: a large batch is tokenized off the event loop, as a large
        prompt is (``prompts.OFF_LOOP_CHARS``)."""
        if sum(len(item) for item in inputs) < OFF_LOOP_CHARS:
            return self._tokenize(inputs)
        return await asyncio.to_thread(self._tokenize, inputs)

    def _tokenize(self, inputs: tuple[EmbeddingInput, ...]) -> list[list[int]]:
        texts = [(i, text) for i, text in enumerate(inputs) if isinstance(text, str)]
        rows: list[list[int]] = [[] for _ in inputs]
        if texts:
            encoded = self.tokenizer([text for _, text in texts])["input_ids"]
            for (i, _), ids in zip(texts, encoded, strict=True):
                rows[i] = list(ids)
        for i, item in enumerate(inputs):
            if not isinstance(item, str):
                bad = next((t for t in item if not 0 <= t < self._vocab), None)
                if bad is not None:
                    raise InvalidRequest(
                        f"Input {i} holds token id {bad}, outside model {self._spec.id!r}'s "
                        f"vocabulary of {self._vocab} tokens.",
                        param="input",
                    )
                rows[i] = [*self._prefix, *item, *self._suffix]
        for i, row in enumerate(rows):
            if len(row) > self._max_tokens:
                raise InputTooLong(index=i, tokens=len(row), context_length=self._max_tokens)
        return rows

    def _submit(self, job: _Job) -> None:
        with self._cond:
            if self._closed:
                raise Unavailable(f"model {self._spec.id!r} is shutting down")
            if self._jobs >= self._max_queue:
                raise Overloaded(
                    f"model {self._spec.id!r} is busy: {self._jobs} requests are already "
                    "waiting; retry shortly"
                )
            self._jobs += 1
            self._waiting.extend((job, i) for i in range(len(job.rows)))
            self._cond.notify()

    # -- worker side ----------------------------------------------------------------

    def _run(self) -> None:
        if self._threads:
            # OpenMP keeps the thread count per calling thread: set it where the work runs.
            torch.set_num_threads(self._threads)
        with torch.inference_mode():
            while True:
                with self._cond:
                    while not self._closed and not self._waiting:
                        self._cond.wait()
                    self._gather()
                    if self._closed:
                        break
                    taken = self._take()
                self._pass(taken)
        with self._cond:
            pending = {job for job, _ in self._waiting}
            self._waiting.clear()
        for job in pending:
            job.finish(Unavailable(f"model {self._spec.id!r} was shut down"))

    def _gather(self) -> None:
        """Under the lock: let the rows still arriving join the pass (``GATHER_GAP_S``)."""
        deadline = time.monotonic() + GATHER_MAX_S
        while not self._closed and len(self._waiting) < self._max_rows:
            left = min(GATHER_GAP_S, deadline - time.monotonic())
            before = len(self._waiting)
            if left <= 0 or (not self._cond.wait(left) and len(self._waiting) == before):
                return

    def _take(self) -> list[tuple[_Job, int]]:
        """Up to ``max_batch_rows`` live rows, oldest first (under the lock)."""
        now = time.monotonic()
        taken: list[tuple[_Job, int]] = []
        while self._waiting and len(taken) < self._max_rows:
            job, index = self._waiting.popleft()
            if not job.gone and now >= job.deadline:
                job.finish(self._timeout_error())
            if job.gone:
                self._uncount(job)
                continue
            taken.append((job, index))
        return taken

    def _pass(self, taken: list[tuple[_Job, int]]) -> None:
        if not taken:
            return
        try:
            pooled = self._forward([job.rows[index] for job, index in taken])
        except Exception as exc:
            # A pass fails for what all its rows share (memory, the device): all fail.
            log.exception("embedding failed for model %s", self._spec.id)
            for job, _ in taken:
                job.finish(exc)
            pooled = None
        jobs = {job for job, _ in taken}
        self.forward_passes += 1
        self.embedded_inputs += len(taken)
        self.max_requests_per_pass = max(self.max_requests_per_pass, len(jobs))
        for row, (job, index) in enumerate(taken):
            if pooled is not None and not job.gone:
                job.vectors[index] = self._vector(pooled[row], job.dimensions)
            job.remaining -= 1
            if job.remaining == 0:
                with self._cond:
                    self._uncount(job)
                job.finish(job.vectors)

    def _uncount(self, job: _Job) -> None:
        """Under the lock: ``job`` no longer waits (once, however many rows it had)."""
        if job.counted:
            job.counted = False
            self._jobs -= 1

    def _forward(self, rows: list[list[int]]) -> torch.Tensor:
        """One padded pass; the pooled (and, if configured, unit-length) states, float32."""
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), self._pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            ids[r, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[r, : len(row)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        states = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        if self._pooling is Pooling.CLS:
            pooled = states[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        pooled = pooled.float()
        if self._spec.normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        result: torch.Tensor = pooled.cpu()
        return result

    def _vector(self, pooled: torch.Tensor, dimensions: int) -> bytes:
        """A row's vector as little-endian float32 bytes, cut to ``dimensions`` and, for a
        normalised model, scaled back to unit length (a Matryoshka model's short form)."""
        if dimensions < pooled.shape[0]:
            pooled = pooled[:dimensions]
            if self._spec.normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=0)
        data: bytes = pooled.numpy().astype("<f4", copy=False).tobytes()
        return data

    def _timeout_error(self) -> GenerationTimeout:
        return GenerationTimeout(
            f"embedding on model {self._spec.id!r} took longer than {self._timeout:g}s"
        )
