"""Prometheus metrics for LLM Server.

Every metric lives in the registry a :class:`Metrics` owns (never the process-global default
registry), so several apps and tests coexist in one process. Names are under ``llmserver_``
and every label value passes through a bounded mapping: label values are model ids from the
configured set, route templates, status classes (``2xx``), cache layers and a small set of
causes and kinds. A value outside the known set, or beyond a per-label cap, is folded into
``other``, so no request field can grow the series count.

Multi-worker deployments: the default deployment runs one process per port behind nginx and
Prometheus scrapes each port. For several workers on one port, start the server with
``PROMETHEUS_MULTIPROC_DIR`` pointing at an empty directory (prometheus-client chooses its
file-backed values at import time from that variable) and pass the same directory as
``multiprocess_dir``; ``render`` then merges every worker's files. Values read at scrape time
(queue depth, request-log batcher, process metrics) describe the worker that answers the
scrape, since only it can see them.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from llmserver.app.metrics_labels import BoundedLabel, status_class
from llmserver.app.metrics_scrape import (
    BatcherSource,
    DeploymentsSource,
    EmbeddingPassesSource,
    PrefixCacheSource,
    QueueDepthSource,
    ScrapeSources,
    ScrapeTimeCollector,
)
from llmserver.app.metrics_teams import TEAM_LABEL_LIMIT, TeamCounters, whole_microdollars

CACHE_LAYERS = frozenset({"hot", "durable"})

# LLM requests span a cached reply (a few ms) to a long generation (minutes on CPU).
LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
    120.0,
)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TOKEN_TIME_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Every name here is a classic one, so the 0.0.4 text format (which Prometheus 2 and 3 and
# every other scraper understand) loses nothing against prometheus-client's 1.0.0 default.
_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

FLUSH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The app's Prometheus metrics; implements the domain ``Telemetry`` port."""

    def __init__(
        self,
        *,
        allowed_models: Iterable[str],
        multiprocess_dir: str | None = None,
    ) -> None:
        if multiprocess_dir is not None and values.ValueClass is values.MutexValue:
            raise ValueError(
                "multiprocess metrics need PROMETHEUS_MULTIPROC_DIR in the environment before "
                "prometheus_client is imported (it picks file-backed values at import time)"
            )
        self._multiprocess_dir = multiprocess_dir
        self._model = BoundedLabel(allowed_models)
        self._route = BoundedLabel()
        self._cause = BoundedLabel()
        self._kind = BoundedLabel()
        self._component = BoundedLabel()
        self._layer = BoundedLabel(CACHE_LAYERS)
        self._sources = ScrapeSources()
        self._scrape_time = ScrapeTimeCollector(self._sources, self._model)

        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._per_request: dict[tuple[Any, ...], Any] = {}
        """The children a per-request method updates, by its arguments as given, so that
        the label mapping runs once per combination. Its arguments are bounded: model ids
        of the registry, route labels, status codes, two cache layers."""
        self._pending: dict[Any, float] = {}
        """Increments of the per-request counters, the in-flight gauge and the histograms'
        sums and buckets (``_observe``), by child, not yet added to it: a dictionary add
        costs a fifth of a child's locked ``inc``. ``fold`` adds them before every render
        and at close; with several workers, whose files another worker may render, at
        every request's start and end."""
        self._spend_remainder: dict[Any, int] = {}
        """Picodollars of spend per model not yet a whole micro-dollar of its counter: the
        counter is a float, exact to 2^53 (9 billion dollars in micro-dollars, 9 thousand
        in picodollars), so it counts whole micro-dollars and this keeps the rest, which
        makes it exactly the floor of the true sum (per worker, with several)."""
        self._registry = CollectorRegistry(auto_describe=True)
        r = self._registry
        self._requests_in_flight = Gauge(
            "llmserver_http_requests_in_flight",
            "HTTP requests being served.",
            ["route"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self._request_duration = Histogram(
            "llmserver_http_request_duration_seconds",
            "HTTP request latency, until the last byte of the response (streams included).",
            ["route", "status_class"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._first_token = Histogram(
            "llmserver_time_to_first_token_seconds",
            "Time from the request reaching the backend to its first generated token.",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self._per_token = Histogram(
            "llmserver_time_per_output_token_seconds",
            "Generation time divided by completion tokens, per finished generation.",
            ["model"],
            buckets=TOKEN_TIME_BUCKETS,
            registry=r,
        )
        self._generation = Histogram(
            "llmserver_generation_duration_seconds",
            "Wall time of a finished generation.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._prompt_tokens = Counter(
            "llmserver_prompt_tokens",
            "Prompt tokens of served requests (cache hits included).",
            ["model"],
            registry=r,
        )
        self._completion_tokens = Counter(
            "llmserver_completion_tokens",
            "Completion tokens of served requests (cache hits included).",
            ["model"],
            registry=r,
        )
        self._spend = Counter(
            "llmserver_spend_microdollars",
            "What served requests cost at the models' prices, in whole micro-dollars "
            "(10^-6 dollars; cache hits only when they count against quota).",
            ["model"],
            registry=r,
        )
        self._teams = TeamCounters(r, BoundedLabel(limit=TEAM_LABEL_LIMIT), self._child)
        self._cache_lookups = Counter(
            "llmserver_cache_lookups",
            "Response-cache lookups by layer and result (hit or miss).",
            ["layer", "result"],
            registry=r,
        )
        self._refused = Counter(
            "llmserver_requests_refused",
            "Requests refused by policy: rpm, quota, budget, queue_full, ...",
            ["cause"],
            registry=r,
        )
        self._backend_errors = Counter(
            "llmserver_backend_errors",
            "Inference backend failures by model and kind.",
            ["model", "kind"],
            registry=r,
        )
        self._model_load = Gauge(
            "llmserver_model_load_duration_seconds",
            "Duration of the model's latest load attempt.",
            ["model"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self._model_loaded = Gauge(
            "llmserver_model_loaded",
            "1 when the model is loaded and serving (in every live worker), else 0.",
            ["model"],
            registry=r,
            multiprocess_mode="livemin",
        )
        self._flush = Histogram(
            "llmserver_request_log_flush_duration_seconds",
            "Duration of request-log batch writes.",
            buckets=FLUSH_BUCKETS,
            registry=r,
        )
        self._redis_errors = Counter(
            "llmserver_redis_errors",
            "Redis failures (the component falls back or refuses, see the logs).",
            ["component"],
            registry=r,
        )
        if multiprocess_dir is None:
            r.register(self._scrape_time)
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)

    def _child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, resolved once per combination: ``labels`` validates
        and locks on every call, several microseconds on each request's path. The label
        values are bounded, so is this."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def _observe(self, child: Any, amount: float) -> None:
        """``child.observe(amount)`` for a histogram's ``child``, added by ``fold`` with the
        counters' increments: ``amount`` to its sum and one to the first bucket whose upper
        bound holds it, as prometheus-client's ``observe`` counts them. Its ``observe``
        walks the bounds in Python and takes two locks, on every request's path; this is
        a binary search and two dictionary adds. It reads the child's value objects
        (``_sum``, ``_buckets``, ``_upper_bounds``: prometheus-client's own names, pinned
        by the lock file; ``tests/unit/test_metrics.py`` checks the exposition against
        ``observe``'s)."""
        pending = self._pending
        total = child._sum
        pending[total] = pending.get(total, 0) + amount
        bucket = child._buckets[bisect_left(child._upper_bounds, amount)]
        pending[bucket] = pending.get(bucket, 0) + 1

    # The domain Telemetry port.

    def cache_lookup(self, layer: str, hit: bool) -> None:
        child = self._per_request.get(("cache_lookup", layer, hit))
        if child is None:
            result = "hit" if hit else "miss"
            child = self._child(self._cache_lookups, self._layer(layer), result)
            self._per_request[("cache_lookup", layer, hit)] = child
        pending = self._pending
        pending[child] = pending.get(child, 0) + 1

    def refused(self, cause: str) -> None:
        self._child(self._refused, self._cause(cause)).inc()

    def tokens(self, model: str, prompt: int, completion: int) -> None:
        children = self._per_request.get(("tokens", model))
        if children is None:
            label = self._model(model)
            children = (
                self._child(self._prompt_tokens, label),
                self._child(self._completion_tokens, label),
            )
            self._per_request[("tokens", model)] = children
        pending = self._pending
        pending[children[0]] = pending.get(children[0], 0) + prompt
        pending[children[1]] = pending.get(children[1], 0) + completion

    def spend(self, model: str, picodollars: int) -> None:
        child = self._per_request.get(("spend", model))
        if child is None:
            child = self._per_request["spend", model] = self._child(self._spend, self._model(model))
        micro = whole_microdollars(self._spend_remainder, child, picodollars)
        if micro:
            pending = self._pending
            pending[child] = pending.get(child, 0) + micro

    def team_usage(self, team: str, prompt: int, completion: int, picodollars: int) -> None:
        self._teams.add(self._pending, team, prompt, completion, picodollars)

    def first_token(self, model: str, seconds: float) -> None:
        self._observe(self._child(self._first_token, self._model(model)), seconds)

    def generation(self, model: str, seconds: float, completion_tokens: int) -> None:
        label = self._model(model)
        self._observe(self._child(self._generation, label), seconds)
        if completion_tokens > 0:
            self._observe(self._child(self._per_token, label), seconds / completion_tokens)

    def backend_error(self, model: str, kind: str) -> None:
        self._child(self._backend_errors, self._model(model), self._kind(kind)).inc()

    # HTTP, models, request log, Redis.

    def request_started(self, route: str) -> None:
        child = self._per_request.get(("started", route))
        if child is None:
            child = self._child(self._requests_in_flight, self._route(route))
            self._per_request[("started", route)] = child
        pending = self._pending
        pending[child] = pending.get(child, 0) + 1
        if self._multiprocess_dir is not None:
            self.fold()

    def request_finished(self, route: str, status: int, seconds: float) -> None:
        children = self._per_request.get(("finished", route, status))
        if children is None:
            label = self._route(route)
            children = (
                self._child(self._requests_in_flight, label),
                self._child(self._request_duration, label, status_class(status)),
            )
            self._per_request[("finished", route, status)] = children
        pending = self._pending
        pending[children[0]] = pending.get(children[0], 0) - 1
        self._observe(children[1], seconds)
        if self._multiprocess_dir is not None:
            self.fold()

    def fold(self) -> None:
        """Add the pending increments to their children."""
        pending, self._pending = self._pending, {}
        for child, amount in pending.items():
            if amount:
                child.inc(amount)

    def model_loaded(self, model: str, seconds: float, loaded: bool) -> None:
        label = self._model(model)
        self._child(self._model_load, label).set(seconds)
        self._child(self._model_loaded, label).set(1 if loaded else 0)

    def set_queue_depth_source(self, source: QueueDepthSource) -> None:
        self._sources.queue_depth = source

    def set_embedding_passes_source(self, source: EmbeddingPassesSource) -> None:
        self._sources.embedding_passes = source

    def set_prefix_cache_source(self, source: PrefixCacheSource) -> None:
        self._sources.prefix_cache = source

    def set_deployments_source(self, source: DeploymentsSource) -> None:
        self._sources.deployments = source

    def set_batcher_source(self, source: BatcherSource) -> None:
        self._sources.batcher = source

    def observe_flush(self, seconds: float) -> None:
        self._flush.observe(seconds)

    def redis_error(self, component: str) -> None:
        self._child(self._redis_errors, self._component(component)).inc()

    # Exposition.

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type."""
        self.fold()
        if self._multiprocess_dir is None:
            return generate_latest(self._registry), _CONTENT_TYPE
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=self._multiprocess_dir)  # type: ignore[no-untyped-call]
        merged.register(self._scrape_time)
        ProcessCollector(registry=merged)
        return generate_latest(merged), _CONTENT_TYPE

    def close(self) -> None:
        """Drop this worker's live gauges from the shared files (multiprocess mode); call
        at app shutdown so an exited worker stops counting as in flight or loaded."""
        self.fold()
        if self._multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), self._multiprocess_dir)  # type: ignore[no-untyped-call]
