"""The metrics read from their owners when Prometheus scrapes, so they are exact, not
polled: the model queues' depth, the local models' prefix caches and the request-log
batcher's state. They describe the
worker that answers the scrape, since only it can see them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llmserver.domain.inference import BackendStatus, PrefixCacheStats


class BatcherState(NamedTuple):
    queued: int
    last_flush_seconds: float
    dead_lettered_rows: int


QueueDepthSource = Callable[[], Mapping[str, int]]
EmbeddingPassesSource = Callable[[], Mapping[str, tuple[int, int]]]
"""Per embedding model: forward passes run and inputs embedded, since it loaded."""
BatcherSource = Callable[[], BatcherState]
PrefixCacheSource = Callable[[], Mapping[str, PrefixCacheStats]]
DeploymentsSource = Callable[[], Iterable[BackendStatus]]
"""The models' statuses: a routed model's carry its deployments and fallback count."""


def embedding_passes(statuses: Iterable[BackendStatus]) -> dict[str, tuple[int, int]]:
    """The embedding backends' pass counts, from their status details."""
    return {
        s.model_id: (int(s.details["forward_passes"]), int(s.details["embedded_inputs"]))
        for s in statuses
        if "forward_passes" in s.details
    }


@dataclass(slots=True)
class ScrapeSources:
    queue_depth: QueueDepthSource | None = None
    batcher: BatcherSource | None = None
    embedding_passes: EmbeddingPassesSource | None = None
    prefix_cache: PrefixCacheSource | None = None
    deployments: DeploymentsSource | None = None


class ScrapeTimeCollector(Collector):
    def __init__(self, sources: ScrapeSources, model_label: Callable[[str], str]) -> None:
        self._sources = sources
        self._model = model_label

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "llmserver_model_queue_depth",
            "Requests waiting for or in generation, per model.",
            labels=["model"],
        )
        if self._sources.queue_depth is not None:
            for label, n in self._per_model(self._sources.queue_depth().items()):
                depth.add_metric([label], n)
        yield depth
        yield from self._embedding_passes()
        yield from self._prefix_cache()
        yield from self._deployments()

        size = GaugeMetricFamily(
            "llmserver_request_log_queue_size",
            "Request-log rows waiting for the batcher to write them.",
        )
        last = GaugeMetricFamily(
            "llmserver_request_log_last_flush_duration_seconds",
            "Duration of the request-log batcher's latest flush.",
        )
        dead = CounterMetricFamily(
            "llmserver_request_log_dead_lettered_rows",
            "Request-log rows the database rejected for their values, set aside (logged as "
            "rows_dead_lettered) so that later rows are written.",
        )
        if self._sources.batcher is not None:
            state = self._sources.batcher()
            size.add_metric([], state.queued)
            last.add_metric([], state.last_flush_seconds)
            dead.add_metric([], state.dead_lettered_rows)
        yield size
        yield last
        yield dead

    def _embedding_passes(self) -> Iterator[Metric]:
        passes = CounterMetricFamily(
            "llmserver_embedding_forward_passes",
            "Forward passes an embedding model has run, per model (inputs / passes is the "
            "average batch: inputs of concurrent requests share passes).",
            labels=["model"],
        )
        inputs = CounterMetricFamily(
            "llmserver_embedding_inputs",
            "Inputs an embedding model has embedded, per model.",
            labels=["model"],
        )
        if self._sources.embedding_passes is not None:
            for model, (ran, embedded) in sorted(self._sources.embedding_passes().items()):
                passes.add_metric([self._model(model)], ran)
                inputs.add_metric([self._model(model)], embedded)
        yield passes
        yield inputs

    def _per_model(self, values: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
        """Summed by model label (models beyond the known set share ``other``)."""
        by_label: dict[str, int] = {}
        for model, n in values:
            label = self._model(model)
            by_label[label] = by_label.get(label, 0) + n
        return sorted(by_label.items())

    def _prefix_cache(self) -> Iterator[Metric]:
        hits = CounterMetricFamily(
            "llmserver_prefix_cache_hit_tokens",
            "Prompt tokens a local model took from its prefix cache instead of computing.",
            labels=["model"],
        )
        evictions = CounterMetricFamily(
            "llmserver_prefix_cache_evictions",
            "Prefix-cache blocks evicted to stay within LLMSERVER_PREFIX_CACHE_MB.",
            labels=["model"],
        )
        held = GaugeMetricFamily(
            "llmserver_prefix_cache_bytes",
            "Bytes of KV cache a local model's prefix cache holds.",
            labels=["model"],
        )
        found = {} if self._sources.prefix_cache is None else self._sources.prefix_cache()
        for family, field in ((hits, "hit_tokens"), (evictions, "evictions"), (held, "bytes")):
            for label, n in self._per_model((m, getattr(s, field)) for m, s in found.items()):
                family.add_metric([label], n)
        yield hits
        yield evictions
        yield held

    def _deployments(self) -> Iterator[Metric]:
        """Each routed model's deployments; their names come from the models file, so the
        label values are bounded by config, never by requests."""
        labels = ["model", "deployment"]
        requests = CounterMetricFamily(
            "llmserver_deployment_requests",
            "Attempts sent to a deployment of a routed model (retries included).",
            labels=labels,
        )
        failures = CounterMetricFamily(
            "llmserver_deployment_failures",
            "Attempts a deployment failed (connect error, timeout, 5xx, or a stream cut).",
            labels=labels,
        )
        retries = CounterMetricFamily(
            "llmserver_deployment_retries",
            "Attempts a deployment got after another attempt of the same request failed.",
            labels=labels,
        )
        healthy = GaugeMetricFamily(
            "llmserver_deployment_healthy",
            "1 while a deployment's circuit is closed, else 0 (open, half-open, failed).",
            labels=labels,
        )
        in_flight = GaugeMetricFamily(
            "llmserver_deployment_in_flight", "Requests a deployment is answering.", labels=labels
        )
        fallbacks = CounterMetricFamily(
            "llmserver_model_fallbacks",
            "Requests a routed model's fallback models answered.",
            labels=["model"],
        )
        statuses = () if self._sources.deployments is None else self._sources.deployments()
        for status in statuses:
            if not status.deployments:
                continue
            model = self._model(status.model_id)
            fallbacks.add_metric([model], status.fallbacks_used)
            for d in status.deployments:
                names = [model, d.name]
                requests.add_metric(names, d.requests)
                failures.add_metric(names, d.failures)
                retries.add_metric(names, d.retries)
                healthy.add_metric(names, 1 if d.healthy else 0)
                in_flight.add_metric(names, d.in_flight)
        yield from (requests, failures, retries, healthy, in_flight, fallbacks)
