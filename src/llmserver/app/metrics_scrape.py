"""The metrics read from their owners when Prometheus scrapes, so they are exact, not
polled: the model queues' depth and the request-log batcher's state. They describe the
worker that answers the scrape, since only it can see them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class BatcherState(NamedTuple):
    queued: int
    last_flush_seconds: float
    dead_lettered_rows: int


QueueDepthSource = Callable[[], Mapping[str, int]]
BatcherSource = Callable[[], BatcherState]


@dataclass(slots=True)
class ScrapeSources:
    queue_depth: QueueDepthSource | None = None
    batcher: BatcherSource | None = None


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
            by_label: dict[str, int] = {}
            for model, n in self._sources.queue_depth().items():
                label = self._model(model)
                by_label[label] = by_label.get(label, 0) + n
            for label, n in sorted(by_label.items()):
                depth.add_metric([label], n)
        yield depth

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
