"""The MultiModelManager: every configured model, loaded eagerly, behind one port.

Each spec's backend kind picks its adapter, and its model kind (chat or embedding) which of
the two ports it serves; the torch, MLX and HTTP modules are imported only when a model
uses them, so a gateway-only install never imports torch. Models load
one after another (loading two at once only fights over the same cores and memory); a
model that fails to load stays failed with its error, which readiness reports and
every request to it receives as ``Unavailable``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import partial
from typing import TYPE_CHECKING

from llmserver.adapters.inference.routed_loading import RoutingOptions, load_routed
from llmserver.domain.backend_ports import EmbeddingBackend, InferenceBackend, ModelBackends
from llmserver.domain.errors import ModelNotFound, Unavailable, WrongModelKind
from llmserver.domain.inference import BackendStatus
from llmserver.domain.pricing import Prices
from llmserver.domain.registry import BackendKind, DeploymentSpec, ModelKind, ModelSpec

if TYPE_CHECKING:
    from llmserver.adapters.inference.http_backend import HttpBackend
    from llmserver.adapters.inference.http_upstream_client import UpstreamClient
    from llmserver.domain.tracing import Tracer


@dataclass(frozen=True, slots=True)
class BackendOptions:
    """Runtime settings shared by every local backend."""

    threads: int | None = None
    max_batch_size: int = 8
    max_queue: int = 64
    max_embedding_batch_rows: int = 64
    """Inputs one forward pass of an embedding model takes at most (from any requests)."""
    request_timeout_s: float = 300.0
    prefix_cache_mb: int = 256
    """Torch: KV cache of shared prompt prefixes kept per model; 0 turns it off."""
    prefill_chunk_tokens: int = 32
    """Torch: most tokens one forward pass computes while rows decode, theirs included."""
    connect_timeout_s: float = 5.0
    """For HTTP upstreams."""
    max_retries: int = 2
    """For HTTP upstreams: retries on connection errors and 5xx before the first byte."""
    tracer: Tracer | None = None
    """Where the backends report their queue waits and upstream calls; ``None``: off."""
    routing: RoutingOptions = field(default_factory=RoutingOptions)
    """For models with several deployments."""


class LoadState(StrEnum):
    PENDING = "pending"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(slots=True)
class _Slot:
    spec: ModelSpec
    state: LoadState = LoadState.PENDING
    backend: InferenceBackend | None = None
    embedder: EmbeddingBackend | None = None
    error: str | None = None
    load_seconds: float | None = None


class MultiModelManager(ModelBackends):
    """Implements the ``ModelBackends`` port over every configured model."""

    def __init__(
        self,
        specs: Iterable[ModelSpec],
        *,
        options: BackendOptions | None = None,
        http_client: UpstreamClient | None = None,
    ) -> None:
        self._slots = {spec.id: _Slot(spec) for spec in specs}
        self._options = options or BackendOptions()
        self._http_client = http_client
        self._owns_http_client = False

    def backend(self, model_id: str) -> InferenceBackend:
        slot = self._slots.get(model_id)
        if slot is None:
            raise ModelNotFound(model_id)
        if slot.backend is not None:
            return slot.backend
        if slot.embedder is not None:
            raise WrongModelKind(
                model_id, kind="an embedding", surface="completions", instead="/v1/embeddings"
            )
        raise self._not_ready(slot)

    def fallback(self, model_id: str) -> tuple[InferenceBackend, Prices]:
        """Another model's backend and prices, for a routed model falling back to it."""
        return self.backend(model_id), self._slots[model_id].spec.prices

    def embedder(self, model_id: str) -> EmbeddingBackend:
        slot = self._slots.get(model_id)
        if slot is None:
            raise ModelNotFound(model_id)
        if slot.embedder is not None:
            return slot.embedder
        if slot.backend is not None:
            raise WrongModelKind(
                model_id, kind="a chat", surface="embeddings", instead="/v1/chat/completions"
            )
        raise self._not_ready(slot)

    @staticmethod
    def _not_ready(slot: _Slot) -> Unavailable:
        model_id = slot.spec.id
        if slot.state is LoadState.FAILED:
            return Unavailable(f"model {model_id!r} failed to load: {slot.error}", retry_after=60)
        if slot.state is LoadState.CLOSED:
            return Unavailable(f"model {model_id!r} is shut down")
        return Unavailable(f"model {model_id!r} is still loading; retry shortly")

    def statuses(self) -> Sequence[BackendStatus]:
        return [self._status(slot) for slot in self._slots.values()]

    @property
    def load_seconds(self) -> dict[str, float]:
        """How long each loaded (or failed) model took to load, for metrics."""
        return {
            model_id: slot.load_seconds
            for model_id, slot in self._slots.items()
            if slot.load_seconds is not None
        }

    async def load_all(self, progress: Callable[[str], None] | None = None) -> None:
        say = progress or (lambda _msg: None)
        total = len(self._slots)
        for n, slot in enumerate(self._slots.values(), start=1):
            spec = slot.spec
            say(f"loading model {n}/{total}: {spec.id} ({spec.backend.value} from {spec.source})")
            slot.state = LoadState.LOADING
            started = time.perf_counter()
            try:
                if spec.kind is ModelKind.EMBEDDING:
                    slot.embedder = await self._load_embedder(spec)
                elif spec.deployments or spec.fallbacks:
                    # Routed: only a routed backend falls back.
                    slot.backend = await load_routed(
                        spec,
                        self._load_deployment,
                        self._options.routing,
                        self.fallback,
                        say,
                        self._client,
                    )
                else:
                    slot.backend = await self._load(spec)
            except Exception as exc:
                slot.state, slot.error = LoadState.FAILED, f"{type(exc).__name__}: {exc}"
                say(f"model {spec.id} failed to load: {slot.error}")
            else:
                slot.state = LoadState.READY
            slot.load_seconds = time.perf_counter() - started
            if slot.state is LoadState.READY:
                say(f"model {spec.id} ready in {slot.load_seconds:.1f}s")

    async def close(self) -> None:
        for slot in self._slots.values():
            loaded = slot.backend or slot.embedder
            if loaded is not None:
                await loaded.close()
                slot.backend, slot.embedder, slot.state = None, None, LoadState.CLOSED
        if self._owns_http_client and self._http_client is not None:
            await self._http_client.close()
            self._http_client = None

    def _http(self, spec: ModelSpec, deployment: DeploymentSpec | None = None) -> HttpBackend:
        """An upstream's backend; a deployment's retries nothing itself (its router does)
        and connects within its own timeout."""
        from llmserver.adapters.inference.http_backend import HttpBackend

        options = self._options
        connect_s = options.connect_timeout_s
        if deployment is not None:
            connect_s = deployment.connect_timeout_s or options.routing.connect_timeout_s
        return HttpBackend(
            spec,
            client=self._client(),
            read_timeout_s=options.request_timeout_s,
            connect_timeout_s=connect_s,
            max_retries=options.max_retries if deployment is None else 0,
        )

    async def _load_deployment(
        self, spec: ModelSpec, deployment: DeploymentSpec
    ) -> InferenceBackend:
        if spec.backend is BackendKind.HTTP:
            return self._http(spec, deployment)
        return await self._load(spec)

    async def _load(self, spec: ModelSpec) -> InferenceBackend:
        options = self._options
        if spec.backend is BackendKind.HTTP:
            return self._http(spec)
        rows = spec.max_batch_size or options.max_batch_size
        if spec.backend is BackendKind.MLX:
            from llmserver.adapters.inference.mlx_backend import MlxBackend

            return await asyncio.to_thread(
                MlxBackend,
                spec,
                max_batch_size=rows,
                max_queue=options.max_queue,
                request_timeout_s=options.request_timeout_s,
                tracer=options.tracer,
            )
        from llmserver.adapters.inference.torch_backend import TorchBackend

        return await asyncio.to_thread(
            TorchBackend,
            spec,
            threads=options.threads,
            max_batch_size=rows,
            max_queue=options.max_queue,
            request_timeout_s=options.request_timeout_s,
            prefix_cache_mb=options.prefix_cache_mb,
            prefill_chunk_tokens=options.prefill_chunk_tokens,
            tracer=options.tracer,
        )

    async def _load_embedder(self, spec: ModelSpec) -> EmbeddingBackend:
        options = self._options
        if spec.backend is BackendKind.HTTP:
            from llmserver.adapters.inference.http_embedding_backend import HttpEmbeddingBackend

            return HttpEmbeddingBackend(spec, self._http(spec))
        if spec.backend is BackendKind.MLX:
            raise ValueError("embedding models run on the torch or http backend, not mlx")
        from llmserver.adapters.inference.torch_embedding_backend import TorchEmbeddingBackend

        return await asyncio.to_thread(
            TorchEmbeddingBackend,
            spec,
            threads=options.threads,
            max_batch_rows=options.max_embedding_batch_rows,
            max_queue=options.max_queue,
            request_timeout_s=options.request_timeout_s,
        )

    def _client(self) -> UpstreamClient:
        if self._http_client is None:
            from llmserver.adapters.inference.http_upstream_client import UpstreamClient

            tracer = self._options.tracer
            if tracer is None:
                self._http_client = UpstreamClient()
            else:
                from llmserver.adapters.inference.http_upstream_tracing import TracedUpstream

                self._http_client = UpstreamClient(pools=partial(TracedUpstream, tracer))
            self._owns_http_client = True
        return self._http_client

    def _status(self, slot: _Slot) -> BackendStatus:
        loaded = slot.backend or slot.embedder
        if loaded is not None:
            status = loaded.status()
        else:
            status = BackendStatus(
                model_id=slot.spec.id,
                ready=False,
                error=slot.error or slot.state.value,
            )
        details = {**status.details, "state": slot.state.value}
        if slot.load_seconds is not None:
            details["load_seconds"] = f"{slot.load_seconds:.3f}"
        return replace(status, details=details)
