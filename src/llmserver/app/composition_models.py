"""The composition root's model half: the ``MultiModelManager`` and its options, from
the settings (routing's included)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from llmserver.domain.registry import ModelSpec
from llmserver.domain.routing.breaker import BreakerPolicy
from llmserver.domain.routing.retry import RetryPolicy

if TYPE_CHECKING:
    from llmserver.adapters.inference.manager import MultiModelManager
    from llmserver.app.settings import Settings
    from llmserver.domain.tracing import Tracer


def model_manager(
    specs: Sequence[ModelSpec], settings: Settings, tracer: Tracer | None
) -> MultiModelManager:
    from llmserver.adapters.inference.manager import BackendOptions, MultiModelManager
    from llmserver.adapters.inference.routed_loading import RoutingOptions

    routing = RoutingOptions(
        retry=RetryPolicy(
            max_attempts=settings.routing_max_attempts,
            backoff_s=settings.routing_backoff_s,
            max_wait_s=settings.routing_max_wait_s,
        ),
        breaker=BreakerPolicy(
            failure_threshold=settings.routing_failure_threshold,
            cooldown_s=settings.routing_cooldown_s,
        ),
        connect_timeout_s=settings.routing_connect_timeout_s,
        first_byte_timeout_s=settings.routing_first_byte_timeout_s,
        total_timeout_s=settings.request_timeout_s,
        max_queue=settings.max_queue,
        seed=settings.routing_seed,
    )
    return MultiModelManager(
        specs,
        options=BackendOptions(
            threads=settings.torch_threads,
            max_batch_size=settings.max_batch_size,
            max_queue=settings.max_queue,
            max_embedding_batch_rows=settings.embedding_batch_rows,
            request_timeout_s=settings.request_timeout_s,
            prefix_cache_mb=settings.prefix_cache_mb,
            prefill_chunk_tokens=settings.prefill_chunk_tokens,
            tracer=tracer,
            routing=routing,
        ),
    )
