"""An admitted request's answer: the durable cache, single-flight, inference, the store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial

from llmserver.domain.cache_keys import CachePolicy
from llmserver.domain.gateway.outcomes import BackendErrors
from llmserver.domain.gateway.values import Admission, Admitted
from llmserver.domain.inference import Completion, FinishReason, Prompt
from llmserver.domain.logs import CacheStatus
from llmserver.domain.ports import (
    CachedCompletion,
    Clock,
    CompletionCache,
    HotCache,
    RowsRejected,
    Telemetry,
)
from llmserver.domain.single_flight import SingleFlight
from llmserver.domain.tools import cache_text


class Answers:
    def __init__(
        self,
        *,
        cache: CompletionCache,
        hot_cache: HotCache | None,
        clock: Clock,
        telemetry: Telemetry,
        policy: CachePolicy,
        flights: SingleFlight[str, Completion],
    ) -> None:
        self._cache = cache
        self._hot = hot_cache
        self._clock = clock
        self._telemetry = telemetry
        self._policy = policy
        self._flights = flights

    async def answer(self, admission: Admission, prompt: Prompt) -> Completion:
        key = admission.cache_key
        if key is None:
            return await self.generate(admission, prompt)
        cached = await self.cached(admission)
        if cached is not None:
            admission.cache_status = CacheStatus.HIT
            return cached
        return await self.join(admission, partial(self.generate, admission, prompt))

    async def join(
        self, admission: Admitted, produce: Callable[[], Awaitable[Completion]]
    ) -> Completion:
        """The answer of the inference running for the admission's cache key, or of
        ``produce``, started now and stored when done (the caller found no cached answer).

        Joining a running inference serves an answer it did not pay for: a (deduplicated)
        hit. The inference runs in its own task so that the request that started it can go
        away without failing the others; it is cancelled when nobody waits any more."""
        key = admission.cache_key
        assert key is not None
        admission.cache_status = CacheStatus.HIT if key in self._flights else CacheStatus.MISS
        return await self._flights.join(key, partial(self._produce_and_store, admission, produce))

    async def cached(self, admission: Admitted) -> Completion | None:
        """The hot cache's answer found at admission, else the durable layer's."""
        if admission.cached is not None or admission.cache_key is None:
            return admission.cached
        return await self._durable_lookup(admission.cache_key)

    async def _durable_lookup(self, key: str) -> Completion | None:
        """The durable layer, asked once the hot one missed; a hit refills the hot one."""
        now = self._clock.now()
        entry = await self._cache.get(key, now)
        self._telemetry.cache_lookup("durable", entry is not None)
        if entry is None:
            return None
        if self._hot is not None:
            remaining = int((entry.expires_at - now).total_seconds())
            if remaining > 0:
                await self._hot.put(entry, remaining)
        return entry.completion()

    async def store(self, admission: Admitted, completion: Completion) -> None:
        assert admission.cache_key is not None
        if completion.tool_calls and completion.finish_reason is not FinishReason.TOOL_CALLS:
            return  # calls cut short (``length``): an entry keeps calls only as ``tool_calls``
        now = self._clock.now()
        entry = CachedCompletion(
            key=admission.cache_key,
            model=admission.spec.id,
            # An answer with calls is one text (``FinishReason.TOOL_CALLS`` says so), so
            # every store keeps it as it keeps any other.
            text=(
                cache_text(completion.text, completion.tool_calls)
                if completion.finish_reason is FinishReason.TOOL_CALLS
                else completion.text
            ),
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            finish_reason=completion.finish_reason,
            created_at=now,
            expires_at=now + timedelta(seconds=self._policy.ttl_seconds),
            logprobs=completion.logprobs,
            more=completion.more,
        )
        try:
            await self._cache.put(entry)
        except RowsRejected:
            # The store cannot hold this answer (PostgreSQL's JSON refuses U+0000, which a
            # byte-level tokenizer can produce): it is served, just not cached.
            return
        if self._hot is not None:
            await self._hot.put(entry, self._policy.ttl_seconds)

    async def _produce_and_store(
        self, admission: Admitted, produce: Callable[[], Awaitable[Completion]]
    ) -> Completion:
        completion = await produce()
        await self.store(admission, completion)
        return completion

    async def generate(self, admission: Admission, prompt: Prompt) -> Completion:
        started = self._clock.monotonic()
        with BackendErrors(self._telemetry, admission.spec.id):
            completion = await admission.backend.generate(prompt, admission.params)
        self._telemetry.generation(
            admission.spec.id, self._clock.monotonic() - started, completion.completion_tokens
        )
        return completion
