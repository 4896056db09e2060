"""The Prometheus metrics: histograms move, labels stay bounded, the exposition parses."""

from __future__ import annotations

import random
import string

import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from llmserver.app.metrics import LATENCY_BUCKETS, Metrics
from llmserver.app.metrics_labels import OTHER, status_class
from llmserver.app.metrics_scrape import BatcherState
from llmserver.app.metrics_teams import TEAM_LABEL_LIMIT
from llmserver.domain.inference import PrefixCacheStats
from llmserver.domain.ports import Telemetry

MODELS = frozenset({"llama-3.2-1b", "demo"})


def samples(metrics: Metrics) -> list[Sample]:
    body, _ = metrics.render()
    return [s for f in text_string_to_metric_families(body.decode()) for s in f.samples]


def value(metrics: Metrics, name: str, **labels: str) -> float:
    found = [s.value for s in samples(metrics) if s.name == name and s.labels == labels]
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(allowed_models=MODELS)


def test_implements_the_domain_telemetry_port(metrics: Metrics) -> None:
    telemetry: Telemetry = metrics
    telemetry.cache_lookup("hot", hit=True)
    assert value(metrics, "llmserver_cache_lookups_total", layer="hot", result="hit") == 1


def test_render_parses_and_every_name_is_namespaced(metrics: Metrics) -> None:
    metrics.request_started("/v1/chat/completions")
    metrics.request_finished("/v1/chat/completions", 200, 0.3)
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=0.0.4")
    families = list(text_string_to_metric_families(body.decode()))
    own = [f.name for f in families if f.name.startswith("llmserver_")]
    others = {f.name.split("_")[0] for f in families} - {"llmserver"}
    assert len(own) >= 14
    # Only the standard process/runtime collectors sit outside the namespace.
    assert others <= {"process", "python"}


def test_request_latency_histogram_moves(metrics: Metrics) -> None:
    route = "/v1/chat/completions"
    metrics.request_started(route)
    assert value(metrics, "llmserver_http_requests_in_flight", route=route) == 1
    metrics.request_finished(route, 200, 0.2)
    metrics.request_started(route)
    metrics.request_finished(route, 429, 0.004)

    assert value(metrics, "llmserver_http_requests_in_flight", route=route) == 0
    ok = {"route": route, "status_class": "2xx"}
    assert value(metrics, "llmserver_http_request_duration_seconds_count", **ok) == 1
    assert value(metrics, "llmserver_http_request_duration_seconds_sum", **ok) == pytest.approx(0.2)
    assert value(metrics, "llmserver_http_request_duration_seconds_bucket", le="0.1", **ok) == 0
    assert value(metrics, "llmserver_http_request_duration_seconds_bucket", le="0.25", **ok) == 1
    refused = {"route": route, "status_class": "4xx"}
    assert (
        value(metrics, "llmserver_http_request_duration_seconds_bucket", le="0.005", **refused) == 1
    )


def test_generation_histograms_and_token_counters_move(metrics: Metrics) -> None:
    metrics.first_token("demo", 0.05)
    metrics.generation("demo", 2.0, completion_tokens=40)
    metrics.generation("demo", 0.01, completion_tokens=0)
    metrics.tokens("demo", prompt=12, completion=40)
    metrics.tokens("demo", prompt=3, completion=5)

    assert value(metrics, "llmserver_time_to_first_token_seconds_count", model="demo") == 1
    assert value(metrics, "llmserver_generation_duration_seconds_count", model="demo") == 2
    # A generation without tokens has no time per token.
    assert value(metrics, "llmserver_time_per_output_token_seconds_count", model="demo") == 1
    assert value(
        metrics, "llmserver_time_per_output_token_seconds_sum", model="demo"
    ) == pytest.approx(0.05)
    assert value(metrics, "llmserver_prompt_tokens_total", model="demo") == 15
    assert value(metrics, "llmserver_completion_tokens_total", model="demo") == 45


def test_histograms_count_as_prometheus_observe_counts(metrics: Metrics) -> None:
    """``Metrics`` adds a histogram's observations itself (``_observe``): the exposition
    must be what prometheus-client's own ``observe`` gives, on the bounds and between."""
    top = LATENCY_BUCKETS[-1]
    amounts = [0.0, 0.005, 0.0051, 0.1, 0.25, 7.5, top, top * 2, 0.01, 0.01]
    reference = Histogram("ref", "r", buckets=LATENCY_BUCKETS, registry=CollectorRegistry())
    for amount in amounts:
        metrics.generation("demo", amount, completion_tokens=0)
        reference.observe(amount)
    theirs = {
        s.labels.get("le", s.name): s.value
        for s in next(iter(reference.collect())).samples
        if not s.name.endswith("_created")
    }
    ours = {
        s.labels.get("le", s.name.replace("llmserver_generation_duration_seconds", "ref")): s.value
        for s in samples(metrics)
        if s.name.startswith("llmserver_generation_duration_seconds")
        and not s.name.endswith("_created")
    }
    assert ours == pytest.approx(theirs)
    assert theirs["+Inf"] == len(amounts)
    assert theirs["0.005"] == 2


def test_spend_counts_whole_microdollars_of_the_exact_sum(metrics: Metrics) -> None:
    metrics.spend("demo", 999_999)  # picodollars: not yet a micro-dollar
    assert value(metrics, "llmserver_spend_microdollars_total", model="demo") == 0
    metrics.spend("demo", 1)
    metrics.spend("demo", 2_500_000)
    assert value(metrics, "llmserver_spend_microdollars_total", model="demo") == 3
    # Past what a float counter of picodollars holds exactly (2^53), still whole and exact.
    metrics.spend("demo", 9 * 10**18)
    metrics.spend("demo", 499_999)
    assert value(metrics, "llmserver_spend_microdollars_total", model="demo") == 9 * 10**12 + 3
    metrics.spend("gpt-4o", 10**6)  # not a served model: counted under OTHER
    assert value(metrics, "llmserver_spend_microdollars_total", model=OTHER) == 1


def test_team_counters_count_exactly_and_fold_teams_past_the_cap(metrics: Metrics) -> None:
    metrics.team_usage("research", 3, 4, 999_999)
    metrics.team_usage("research", 1, 1, 1)
    assert value(metrics, "llmserver_team_prompt_tokens_total", team="research") == 4
    assert value(metrics, "llmserver_team_completion_tokens_total", team="research") == 5
    assert value(metrics, "llmserver_team_spend_microdollars_total", team="research") == 1
    for n in range(TEAM_LABEL_LIMIT + 5):
        metrics.team_usage(f"team {n}", 1, 0, 0)
    teams = {
        dict(s.labels)["team"]
        for s in samples(metrics)
        if s.name == "llmserver_team_prompt_tokens_total"
    }
    assert len(teams) == TEAM_LABEL_LIMIT + 1  # the first 100 names, and "other"
    # Past the cap, every team counts under "other": the sum stays exact.
    assert value(metrics, "llmserver_team_prompt_tokens_total", team=OTHER) == 6


def test_refusals_errors_cache_and_redis_counters(metrics: Metrics) -> None:
    metrics.refused("rpm")
    metrics.refused("rpm")
    metrics.refused("quota")
    metrics.backend_error("demo", "timeout")
    metrics.cache_lookup("durable", hit=False)
    metrics.redis_error("ratelimit")
    metrics.observe_flush(0.02)

    assert value(metrics, "llmserver_requests_refused_total", cause="rpm") == 2
    assert value(metrics, "llmserver_requests_refused_total", cause="quota") == 1
    assert value(metrics, "llmserver_backend_errors_total", model="demo", kind="timeout") == 1
    assert value(metrics, "llmserver_cache_lookups_total", layer="durable", result="miss") == 1
    assert value(metrics, "llmserver_redis_errors_total", component="ratelimit") == 1
    assert value(metrics, "llmserver_request_log_flush_duration_seconds_count") == 1


def test_model_load_state(metrics: Metrics) -> None:
    metrics.model_loaded("demo", 1.5, loaded=True)
    metrics.model_loaded("llama-3.2-1b", 0.2, loaded=False)
    assert value(metrics, "llmserver_model_loaded", model="demo") == 1
    assert value(metrics, "llmserver_model_load_duration_seconds", model="demo") == 1.5
    assert value(metrics, "llmserver_model_loaded", model="llama-3.2-1b") == 0


def test_scrape_time_gauges_read_their_sources_on_every_render(metrics: Metrics) -> None:
    depth = {"demo": 3, "llama-3.2-1b": 0}
    batcher = BatcherState(7, 0.012, 0)
    metrics.set_queue_depth_source(lambda: depth)
    metrics.set_batcher_source(lambda: batcher)
    assert value(metrics, "llmserver_model_queue_depth", model="demo") == 3
    assert value(metrics, "llmserver_request_log_queue_size") == 7

    depth["demo"] = 1
    batcher = BatcherState(0, 0.5, 2)
    assert value(metrics, "llmserver_model_queue_depth", model="demo") == 1
    assert value(metrics, "llmserver_request_log_queue_size") == 0
    assert value(metrics, "llmserver_request_log_last_flush_duration_seconds") == 0.5
    assert value(metrics, "llmserver_request_log_dead_lettered_rows_total") == 2


def test_scrape_time_gauges_are_empty_without_sources(metrics: Metrics) -> None:
    names = {s.name for s in samples(metrics)}
    assert "llmserver_model_queue_depth" not in names
    assert "llmserver_request_log_queue_size" not in names


def random_name(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_lowercase + string.digits, k=12))


def test_label_cardinality_stays_bounded_under_random_values(metrics: Metrics) -> None:
    rng = random.Random(7)
    for _ in range(1000):
        model = random_name(rng)
        metrics.tokens(model, prompt=1, completion=1)
        metrics.first_token(model, 0.01)
        metrics.backend_error(model, random_name(rng))
        metrics.refused(random_name(rng))
        metrics.cache_lookup(random_name(rng), hit=True)
        metrics.request_started(random_name(rng))
        metrics.request_finished(random_name(rng), rng.randrange(0, 1000), 0.1)
    metrics.set_queue_depth_source(lambda: {random_name(rng): 1 for _ in range(100)})

    found = samples(metrics)
    assert value(metrics, "llmserver_prompt_tokens_total", model=OTHER) == 1000
    assert value(metrics, "llmserver_model_queue_depth", model=OTHER) == 100
    assert value(metrics, "llmserver_cache_lookups_total", layer=OTHER, result="hit") == 1000
    for label in ("model", "kind", "cause", "layer", "route", "status_class"):
        distinct = {s.labels[label] for s in found if label in s.labels}
        assert len(distinct) <= 33, label
    assert len(found) < 3000


def test_known_models_keep_their_own_label(metrics: Metrics) -> None:
    metrics.tokens("demo", prompt=1, completion=0)
    metrics.tokens("gpt-4o", prompt=1, completion=0)
    assert value(metrics, "llmserver_prompt_tokens_total", model="demo") == 1
    assert value(metrics, "llmserver_prompt_tokens_total", model=OTHER) == 1


def test_two_instances_do_not_share_state() -> None:
    a = Metrics(allowed_models=MODELS)
    b = Metrics(allowed_models=MODELS)
    a.refused("rpm")
    assert value(a, "llmserver_requests_refused_total", cause="rpm") == 1
    assert "llmserver_requests_refused_total" not in {s.name for s in samples(b)}


@pytest.mark.parametrize(
    ("status", "expected"), [(200, "2xx"), (499, "4xx"), (503, "5xx"), (42, OTHER), (700, OTHER)]
)
def test_status_class(status: int, expected: str) -> None:
    assert status_class(status) == expected


def test_multiprocess_dir_needs_the_environment_at_import(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="PROMETHEUS_MULTIPROC_DIR"):
        Metrics(allowed_models=MODELS, multiprocess_dir=str(tmp_path))


def test_prefix_cache_counters_read_each_model_at_scrape_time(metrics: Metrics) -> None:
    assert "llmserver_prefix_cache_hit_tokens_total" not in {s.name for s in samples(metrics)}
    held = {
        "demo": PrefixCacheStats(hit_tokens=48, evictions=2, blocks=3, bytes=3072),
        "unknown-a": PrefixCacheStats(hit_tokens=16, evictions=1),
        "unknown-b": PrefixCacheStats(hit_tokens=32),
    }
    metrics.set_prefix_cache_source(lambda: held)
    assert value(metrics, "llmserver_prefix_cache_hit_tokens_total", model="demo") == 48
    assert value(metrics, "llmserver_prefix_cache_evictions_total", model="demo") == 2
    assert value(metrics, "llmserver_prefix_cache_bytes", model="demo") == 3072
    # Models outside the configured set share one bounded label.
    assert value(metrics, "llmserver_prefix_cache_hit_tokens_total", model=OTHER) == 48
    assert value(metrics, "llmserver_prefix_cache_evictions_total", model=OTHER) == 1
