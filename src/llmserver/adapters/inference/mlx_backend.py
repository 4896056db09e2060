"""The MLX backend: mlx-lm models (Apple silicon; also MLX's CPU build on Linux).

Requests run one at a time on one dedicated thread, in arrival order. mlx-lm's
``generate_step`` is single-sequence and MLX's random state is global (``mx.random.seed``
is how a request's ``seed`` reproduces), so running requests side by side would mix
their random streams; on Apple silicon one sequence already keeps the GPU busy for the
8B-class models this backend is for. The queue in front is bounded like the torch
backend's, and a cancelled or timed-out request stops at its next token.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from llmserver.adapters.inference.generation import (
    EventChannel,
    TokenEvents,
    check_request,
    collect,
    consume,
)
from llmserver.adapters.inference.prompts import PromptEncoder
from llmserver.domain.errors import GenerationTimeout, Overloaded, Unavailable
from llmserver.domain.inference import (
    BackendStatus,
    Completion,
    GenerationParams,
    Prompt,
    StreamEvent,
)
from llmserver.domain.ports import InferenceBackend
from llmserver.domain.registry import ModelSpec
from llmserver.domain.tracing import QUEUE_WAIT, Span, Tracer

MISSING_MLX = (
    'the MLX backend needs mlx-lm and mlx: pip install "llmserver[mlx]" '
    "(on Linux this brings MLX's CPU build)"
)


@dataclass(eq=False, slots=True)
class _Job:
    ids: list[int]
    params: GenerationParams
    channel: EventChannel
    deadline: float
    waiting: bool = True
    queued: Span | None = None
    """Its queue-wait span (tracing on), ended when it leaves the queue."""


class MlxBackend(InferenceBackend):
    def __init__(
        self,
        spec: ModelSpec,
        *,
        max_queue: int = 64,
        request_timeout_s: float = 300.0,
        tracer: Tracer | None = None,
    ) -> None:
        self._tracer = tracer
        try:
            import mlx.core as mx
            import mlx_lm
            from mlx_lm.generate import generate_step
            from mlx_lm.sample_utils import make_sampler
        except ImportError as exc:
            raise RuntimeError(MISSING_MLX) from exc
        self._mx: Any = mx
        self._generate_step: Any = generate_step
        self._make_sampler: Any = make_sampler
        self._spec = spec
        loaded: Any = mlx_lm.load(spec.source)
        self._model, wrapper = loaded[0], loaded[1]
        self.tokenizer: Any = wrapper._tokenizer
        self._eos = frozenset(int(i) for i in wrapper.eos_token_ids)
        self._encode = PromptEncoder(self.tokenizer, spec.id, max_ids=spec.context_length)
        self._context_length = spec.context_length
        self._max_queue = max_queue
        self._timeout = request_timeout_s
        self._lock = threading.Lock()
        self._waiting = 0
        self._active = 0
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"mlx-{spec.id}")

    @property
    def model_id(self) -> str:
        return self._spec.id

    async def count_tokens(self, prompt: Prompt) -> int:
        return await self._encode.count(prompt)

    def min_prompt_tokens(self, prompt: Prompt) -> int:
        return self._encode.floor(prompt)

    async def generate(self, prompt: Prompt, params: GenerationParams) -> Completion:
        return await collect(self._start(await self._encode.encode(prompt), params))

    def stream(self, prompt: Prompt, params: GenerationParams) -> AsyncIterator[StreamEvent]:
        return self._encode.start(prompt, lambda ids: self._start(ids, params))

    def _start(self, ids: list[int], params: GenerationParams) -> AsyncIterator[StreamEvent]:
        check_request(len(ids), params, self._context_length)
        job = _Job(
            ids,
            params,
            EventChannel(asyncio.get_running_loop()),
            deadline=time.monotonic() + self._timeout,
        )
        with self._lock:
            if self._closed:
                raise Unavailable(f"model {self._spec.id!r} is shutting down")
            if self._waiting >= self._max_queue:
                raise Overloaded(
                    f"model {self._spec.id!r} is busy: {self._waiting} requests are "
                    "already waiting; retry shortly"
                )
            self._waiting += 1
        if self._tracer is not None:
            job.queued = self._tracer.start(QUEUE_WAIT)
        self._executor.submit(self._run, job)
        return consume(job.channel, lambda: self._leave_queue(job))

    def status(self) -> BackendStatus:
        with self._lock:
            waiting, active = self._waiting, self._active
        return BackendStatus(
            model_id=self._spec.id,
            ready=not self._closed,
            error="closed" if self._closed else None,
            queue_depth=waiting,
            details={"backend": "mlx", "active": str(active), "max_batch_size": "1"},
        )

    async def close(self) -> None:
        with self._lock:
            self._closed = True
        self._encode.close()
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    def _leave_queue(self, job: _Job) -> bool:
        """Free the job's queue slot once (when it starts, or when its consumer leaves)."""
        with self._lock:
            was_waiting, job.waiting = job.waiting, False
            if was_waiting:
                self._waiting -= 1
        if was_waiting and job.queued is not None:
            job.queued.end()
        return was_waiting

    def _shut_down(self) -> Unavailable:
        return Unavailable(f"model {self._spec.id!r} was shut down")

    def _decode(self, ids: Sequence[int]) -> str:
        text: str = self.tokenizer.decode(ids, skip_special_tokens=True)
        return text

    def _run(self, job: _Job) -> None:
        if not self._leave_queue(job):
            return  # abandoned while waiting
        if self._closed:
            job.channel.send(self._shut_down())
            return
        with self._lock:
            self._active += 1
        try:
            self._generate(job)
        except Exception as exc:
            job.channel.send(exc)
        finally:
            with self._lock:
                self._active -= 1

    def _generate(self, job: _Job) -> None:
        mx, params = self._mx, job.params
        mx.random.seed(params.seed if params.seed is not None else secrets.randbits(32))
        sampler = self._make_sampler(
            temp=0.0 if params.greedy else params.temperature,
            top_p=params.top_p if params.top_p < 1.0 else 0.0,
        )
        events = TokenEvents(self._decode, params, len(job.ids), self._eos)
        steps = self._generate_step(
            mx.array(job.ids), self._model, max_tokens=params.max_tokens, sampler=sampler
        )
        for token, _logprobs in steps:
            if job.channel.cancelled:
                return
            if self._closed:
                job.channel.send(self._shut_down())
                return
            if time.monotonic() >= job.deadline:
                job.channel.send(
                    GenerationTimeout(
                        f"generation on model {self._spec.id!r} took longer than {self._timeout:g}s"
                    )
                )
                return
            out, finished = events.push(int(token))
            for event in out:
                job.channel.send(event)
            if finished:
                return
