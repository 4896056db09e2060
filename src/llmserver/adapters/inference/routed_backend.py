"""A model served by several deployments, behind the one ``InferenceBackend`` port.

Each call takes a deployment from ``Deployments`` (strategy, circuit, slots) and calls
its backend. A failure before the first event of the answer (a connect error, a timeout,
a 429, a 5xx, a full queue) is judged by ``domain.routing.retry``: worth another attempt
goes to another deployment, then the same, within ``RetryPolicy.max_attempts``, waiting
out backoff and ``Retry-After``. Once every attempt failed that way, the model's
``fallbacks`` are tried in order, a stream's too, all before its first byte. After the
first event reached the gateway nothing is retried: a failure then ends the stream with
an error, as a single backend's does. The gateway sees one call, so a client request
holds one quota reservation and one RPM slot however many attempts it takes; the final
``Completion``/``StreamEnd`` says which deployment answered, after how many attempts and
at which prices (the deployment's, or a fallback's), and a failure (a ``GatewayError``)
says which deployment was tried last and how many attempts were made.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import replace
from typing import TypeVar

from llmserver.adapters.inference.routed_attempts import Tally, relabel, via
from llmserver.adapters.inference.routed_deployments import Deployment, Deployments, NoneUsable
from llmserver.adapters.inference.routed_probe import Prober
from llmserver.domain.backend_ports import InferenceBackend
from llmserver.domain.errors import GatewayError, GenerationTimeout, Overloaded, Unavailable
from llmserver.domain.inference import (
    BackendStatus,
    Completion,
    GenerationParams,
    Prompt,
    ServedStream,
    StreamEnd,
    StreamEvent,
    close_stream,
)
from llmserver.domain.pricing import Prices
from llmserver.domain.registry import ModelSpec
from llmserver.domain.routing.retry import RetryPolicy, judge

T = TypeVar("T")

FallbackLookup = Callable[[str], tuple[InferenceBackend, Prices]]
"""The backend of another model, by id, and its prices (the manager's ``fallback``)."""


class RoutedBackend(InferenceBackend):
    def __init__(
        self,
        spec: ModelSpec,
        deployments: Deployments,
        *,
        retry: RetryPolicy,
        fallbacks: FallbackLookup,
        prober: Prober | None = None,
    ) -> None:
        """``prober``: the running probe of its deployments, stopped by ``close``."""
        self._spec = spec
        self._prober = prober
        self._pool = deployments
        self._retry = retry
        self._fallbacks = fallbacks
        self.fallbacks_used = 0
        self._as_fallback: RoutedBackend | None = None

    def as_fallback(self) -> RoutedBackend:
        """This model as another's fallback: its deployments, not its own fallbacks, so
        fallbacks never chain (nor loop: two models may name each other)."""
        if self._as_fallback is None:
            self._as_fallback = RoutedBackend(
                replace(self._spec, fallbacks=()),
                self._pool,
                retry=self._retry,
                fallbacks=self._fallbacks,
            )
        return self._as_fallback

    @property
    def model_id(self) -> str:
        return self._spec.id

    async def count_tokens(self, prompt: Prompt) -> int:
        return await self._pool.first_loaded().count_tokens(prompt)

    def min_prompt_tokens(self, prompt: Prompt) -> int:
        return self._pool.first_loaded().min_prompt_tokens(prompt)

    # -- whole answers ------------------------------------------------------------------

    async def generate(self, prompt: Prompt, params: GenerationParams) -> Completion:
        tally = Tally()

        async def call(deployment: Deployment) -> Completion:
            assert deployment.backend is not None
            async with asyncio.timeout(deployment.timeouts.total_s):
                return await deployment.backend.generate(prompt, params)

        found = await self._attempts(tally, call, keep_slot=False)
        if found is not None:
            deployment, completion = found
            completion.served_by, completion.attempts = deployment.name, tally.attempts
            completion.prices = deployment.prices
            return completion
        for model_id, backend, prices in self._fallback_backends(tally):
            tally.attempts += 1
            try:
                completion = await backend.generate(prompt, params)
            except Exception as exc:
                if not self._note_fallback_failure(tally, model_id, exc):
                    raise
                continue
            self.fallbacks_used += 1
            completion.served_by = via(model_id, completion.served_by)
            completion.attempts = tally.attempts + completion.attempts - 1
            completion.prices = completion.prices or prices
            return completion
        raise self._final_error(tally)

    # -- streams ------------------------------------------------------------------------

    def stream(self, prompt: Prompt, params: GenerationParams) -> AsyncIterator[StreamEvent]:
        return ServedStream(lambda served: self._stream(prompt, params, served))

    async def _stream(
        self, prompt: Prompt, params: GenerationParams, served: ServedStream
    ) -> AsyncGenerator[StreamEvent, None]:
        tally = Tally()

        async def first_event(
            deployment: Deployment,
        ) -> tuple[AsyncIterator[StreamEvent], StreamEvent]:
            assert deployment.backend is not None
            events = deployment.backend.stream(prompt, params)
            try:
                async with asyncio.timeout(deployment.timeouts.first_byte_s):
                    return events, await anext(events)
            except BaseException:
                await close_stream(events)
                raise

        found = await self._attempts(tally, first_event, keep_slot=True)
        if found is not None:
            deployment, (events, first) = found
            served.prices = deployment.prices
            try:
                async with aclosing(self._rest(deployment, events, first, tally)) as rest:
                    async for event in rest:
                        yield event
            finally:
                self._pool.release(deployment)
            return
        for model_id, backend, prices in self._fallback_backends(tally):
            tally.attempts += 1
            events = backend.stream(prompt, params)
            try:
                first = await anext(events)
            except Exception as exc:
                await close_stream(events)
                if not self._note_fallback_failure(tally, model_id, exc):
                    raise
                continue
            self.fallbacks_used += 1
            inner = events.prices if isinstance(events, ServedStream) else None
            served.prices = inner or prices
            relabelled = relabel(events, first, model_id, prices, tally)
            async with aclosing(relabelled):
                async for event in relabelled:
                    yield event
            return
        raise self._final_error(tally)

    async def _rest(
        self,
        deployment: Deployment,
        events: AsyncIterator[StreamEvent],
        first: StreamEvent,
        tally: Tally,
    ) -> AsyncGenerator[StreamEvent, None]:
        """The stream from its first event on, bounded by the deployment's total time; a
        failure now is the client's in-stream error and the deployment's mark."""
        deadline = asyncio.get_running_loop().time() + deployment.timeouts.total_s
        event = first
        try:
            while True:
                if isinstance(event, StreamEnd):
                    yield replace(
                        event,
                        served_by=deployment.name,
                        attempts=tally.attempts,
                        prices=deployment.prices,
                    )
                    break
                yield event
                try:
                    async with asyncio.timeout_at(deadline):
                        event = await anext(events)
                except TimeoutError as exc:
                    raise GenerationTimeout(
                        f"deployment {deployment.name!r} of model {self._spec.id!r} ran past "
                        f"its total timeout of {deployment.timeouts.total_s:g}s"
                    ) from exc
        except Exception as exc:
            if judge(exc).unhealthy:
                deployment.failures += 1
                deployment.breaker.on_failure(self._pool.clock())
            tally.failed(exc)
            raise
        finally:
            await close_stream(events)

    # -- attempts -----------------------------------------------------------------------

    async def _attempts(
        self,
        tally: Tally,
        call: Callable[[Deployment], Awaitable[T]],
        *,
        keep_slot: bool,
    ) -> tuple[Deployment, T] | None:
        """``call`` on deployments until one succeeds (its slot still held if
        ``keep_slot``), or ``None`` when every attempt failed in a way a fallback may
        cure (``tally.error`` the last failure); any other failure is raised. A 429's
        ``Retry-After`` keeps its deployment out of the choice until then; the request
        waits for it only when no other is usable and the wait is within the policy's."""
        tried: list[Deployment] = []
        while tally.attempts < self._retry.max_attempts:
            try:
                deployment = await self._pool.acquire(tried)
            except NoneUsable as none:
                if not self._retry.may_wait(none.wait_s):
                    tally.error = tally.error or Unavailable(
                        f"no deployment of model {self._spec.id!r} is healthy; retry shortly",
                        retry_after=none.wait_s or 5.0,
                    )
                    return None
                await asyncio.sleep(none.wait_s or 0.0)
                continue
            except Overloaded as exc:
                tally.error = exc
                return None
            tally.attempts += 1
            tally.tried = deployment.name
            if deployment in tried:  # no other deployment left: the same one, after backoff
                await asyncio.sleep(self._retry.backoff_before(tally.attempts))
            if tried:
                deployment.retries += 1
            tried.append(deployment)
            started = self._pool.clock()
            try:
                result = await call(deployment)
            except Exception as exc:
                self._pool.release(deployment)
                verdict = judge(exc)
                if not verdict.retry:
                    deployment.breaker.on_abandoned()
                    tally.failed(exc)
                    raise
                tally.error = self._timeout(deployment) if isinstance(exc, TimeoutError) else exc
                self._mark(deployment, verdict.unhealthy, verdict.retry_after_s)
                continue
            except BaseException:  # cancelled: the client left
                self._pool.release(deployment)
                deployment.breaker.on_abandoned()
                raise
            deployment.measured(self._pool.clock() - started)
            deployment.breaker.on_success()
            if not keep_slot:
                self._pool.release(deployment)
            return deployment, result
        return None

    def _mark(self, deployment: Deployment, unhealthy: bool, retry_after_s: float | None) -> None:
        now = self._pool.clock()
        if unhealthy:
            deployment.failures += 1
            deployment.breaker.on_failure(now)
        else:
            deployment.breaker.on_abandoned()
        if retry_after_s:
            deployment.not_before = now + retry_after_s

    def _timeout(self, deployment: Deployment) -> GenerationTimeout:
        return GenerationTimeout(
            f"deployment {deployment.name!r} of model {self._spec.id!r} did not answer in "
            f"time (first byte {deployment.timeouts.first_byte_s:g}s, total "
            f"{deployment.timeouts.total_s:g}s)"
        )

    # -- fallbacks ----------------------------------------------------------------------

    def _fallback_backends(self, tally: Tally) -> list[tuple[str, InferenceBackend, Prices]]:
        found: list[tuple[str, InferenceBackend, Prices]] = []
        for model_id in self._spec.fallbacks:
            try:
                backend, prices = self._fallbacks(model_id)
            except GatewayError as exc:  # not loaded (yet, or at all)
                tally.error = tally.error or exc
                continue
            if isinstance(backend, RoutedBackend):
                backend = backend.as_fallback()
            found.append((model_id, backend, prices))
        return found

    def _note_fallback_failure(self, tally: Tally, model_id: str, exc: BaseException) -> bool:
        """Whether the next fallback may still cure ``exc`` (noted as the last error, its
        deployment and attempts added to the request's)."""
        if isinstance(exc, GatewayError):
            tally.tried = via(model_id, exc.deployment)
            tally.attempts += (exc.attempts or 1) - 1
        else:
            tally.tried = model_id
        if not judge(exc).retry:
            tally.failed(exc)
            return False
        tally.error = exc
        return True

    def _final_error(self, tally: Tally) -> BaseException:
        """What the client gets when every attempt and fallback failed: a saturated model
        is ``Overloaded`` (503 with Retry-After); otherwise the last failure."""
        return tally.failed(
            tally.error or Unavailable(f"model {self._spec.id!r} has no deployment to try")
        )

    # -- state --------------------------------------------------------------------------

    def status(self) -> BackendStatus:
        now = self._pool.clock()
        deployments = tuple(d.status(now) for d in self._pool.all)
        healthy = [d.name for d in deployments if d.healthy]
        return BackendStatus(
            model_id=self._spec.id,
            ready=bool(healthy),
            error=None if healthy else "no deployment is healthy",
            queue_depth=self._pool.waiting,
            details={"backend": "routed", "routing": self._spec.routing.value},
            deployments=deployments,
            fallbacks_used=self.fallbacks_used,
        )

    async def close(self) -> None:
        if self._prober is not None:
            await self._prober.close()
        for deployment in self._pool.all:
            if deployment.backend is not None:
                await deployment.backend.close()
