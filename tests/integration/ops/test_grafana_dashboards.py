"""Grafana provisioning and dashboards: they parse, point at the provisioned data source, and
every PromQL expression selects only metrics LLM Server (or Prometheus itself) exports."""

from __future__ import annotations

import json

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from integration.ops.opstools import (
    DASHBOARDS,
    PROMETHEUS_SYNTHETIC,
    ROOT,
    dashboard_expressions,
    exported_metric_names,
    metric_names_in_dashboards,
    metric_names_in_expression,
)
from llmserver.app.metrics import Metrics

PROVISIONING = ROOT / "ops/grafana/provisioning"


def rendered_metric_names() -> set[str]:
    body, _ = Metrics(allowed_models={"demo"}).render()
    return exported_metric_names(body.decode())


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'histogram_quantile(0.95, sum by (le, model) (rate(a_bucket{model=~"$model"}[5m])))',
            {"a_bucket"},
        ),
        ('sum(rate(b_total{x="by (le)", y=~"c(d)"}[$__rate_interval])) / sum(c)', {"b_total", "c"}),
        ("x / on(instance) group_left(job) y offset 5m", {"x", "y"}),
        ("time() - process_start_time_seconds", {"process_start_time_seconds"}),
        ("up == bool 1 and ignoring(job) nan", {"up"}),
        ("scrape:rate5m > 1e3", {"scrape:rate5m"}),
    ],
)
def test_metric_names_are_read_from_promql(expr: str, names: set[str]) -> None:
    assert metric_names_in_expression(expr) == names


def test_both_dashboards_exist_with_stable_uids() -> None:
    titles = {
        json.loads(p.read_text())["title"]: json.loads(p.read_text())["uid"] for p in DASHBOARDS
    }
    assert titles == {
        "LLM API Overview": "llmserver-overview",
        "Prometheus system view": "llmserver-system",
    }


def test_dashboards_query_only_the_provisioned_data_source() -> None:
    provisioned = yaml.safe_load((PROVISIONING / "datasources/prometheus.yml").read_text())
    uids = {source["uid"] for source in provisioned["datasources"]}
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in board["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] in uids, (path.name, panel["title"])
            assert panel["targets"], (path.name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"]["uid"] in uids


def test_dashboard_provider_loads_the_dashboards_folder() -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards/llmserver.yml").read_text())
    assert [p["options"]["path"] for p in provider["providers"]] == ["/etc/grafana/dashboards"]


def test_overview_covers_what_operators_watch() -> None:
    overview = " ".join(
        expr for name, _, expr in dashboard_expressions() if name == "llm-api-overview.json"
    )
    for needed in (
        "histogram_quantile(0.99, sum by (le) (rate(llmserver_http_request_duration_seconds",
        "llmserver_time_to_first_token_seconds_bucket",
        "llmserver_completion_tokens_total",
        'result="hit"',
        "llmserver_requests_refused_total",
        "llmserver_model_queue_depth",
        'status_class="5xx"',
    ):
        assert needed in overview


def test_every_dashboard_metric_is_exported_by_the_app_or_prometheus() -> None:
    unknown = metric_names_in_dashboards() - rendered_metric_names() - PROMETHEUS_SYNTHETIC
    assert not unknown, f"dashboards query metrics nobody exports: {sorted(unknown)}"


def test_every_app_metric_has_a_panel() -> None:
    body, _ = Metrics(allowed_models={"demo"}).render()
    # prometheus-client writes each unlabelled histogram's creation time as a *_created gauge.
    families = [
        f.name
        for f in text_string_to_metric_families(body.decode())
        if not f.name.endswith("_created")
    ]
    charted = metric_names_in_dashboards()
    missing = [
        family
        for family in families
        if family.startswith("llmserver_")
        and not any(name == family or name.startswith(f"{family}_") for name in charted)
    ]
    assert not missing, f"exported but on no dashboard: {missing}"
