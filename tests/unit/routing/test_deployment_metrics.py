"""Per-deployment metrics of routed models, read from their statuses at scrape time."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from llmserver.app.metrics import Metrics
from llmserver.domain.inference import BackendStatus, DeploymentStatus


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if s.name.startswith(("llmserver_deployment", "llmserver_model_fallbacks"))
    }


def test_each_deployment_is_a_labelled_series_and_unrouted_models_none() -> None:
    metrics = Metrics(allowed_models={"chat"})
    routed = BackendStatus(
        model_id="chat",
        ready=True,
        fallbacks_used=4,
        deployments=(
            DeploymentStatus("gpu-a", "http", "closed", True, 2, 8, 100, 3, 1, 0.2),
            DeploymentStatus("gpu-b", "http", "open", False, 0, None, 50, 9, 2, None),
        ),
    )
    plain = BackendStatus(model_id="demo", ready=True)
    metrics.set_deployments_source(lambda: [routed, plain])
    found = samples(metrics.render()[0])
    a = (("deployment", "gpu-a"), ("model", "chat"))
    b = (("deployment", "gpu-b"), ("model", "chat"))
    assert found == {
        ("llmserver_deployment_requests_total", a): 100,
        ("llmserver_deployment_requests_total", b): 50,
        ("llmserver_deployment_failures_total", a): 3,
        ("llmserver_deployment_failures_total", b): 9,
        ("llmserver_deployment_retries_total", a): 1,
        ("llmserver_deployment_retries_total", b): 2,
        ("llmserver_deployment_healthy", a): 1,
        ("llmserver_deployment_healthy", b): 0,
        ("llmserver_deployment_in_flight", a): 2,
        ("llmserver_deployment_in_flight", b): 0,
        ("llmserver_model_fallbacks_total", (("model", "chat"),)): 4,
    }
