"""The Kubernetes manifests (ops/k8s) against Kubernetes' own schemas, without a cluster.

kubectl's own kustomize renders both overlays (every kubectl here, the project's and the
machine's, must render them alike); every rendered object validates against the Kubernetes
API schemas of the oldest supported and the newest release (kubernetes-validate, strict: an
unknown field fails), the ServiceMonitor against its CRD's fields; and no secret value is
in the repository. ``test_kubernetes`` checks what the manifests assume about the app.
"""

from __future__ import annotations

import copy
import re

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]  # ships no type information
import pytest

from integration.ops.k8stools import (
    CUSTOM_SCHEMAS,
    OVERLAY_NAMES,
    SECRET_NAME,
    Manifest,
    Rendered,
    kubectls,
    only,
    render,
    secret_refs,
    server,
)
from integration.ops.opstools import ROOT

SCHEMA_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
"""The oldest Kubernetes these manifests support (HPA autoscaling/v2, PDB policy/v1 and the
PDB's unhealthyPodEvictionPolicy are there) and the newest kubernetes-validate knows."""

SHARED_KINDS = ("ConfigMap", "Deployment", "Service", "Ingress")
KINDS = {
    "embedded": (*SHARED_KINDS, "PersistentVolumeClaim"),
    "production": (
        *SHARED_KINDS,
        *("Job", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceMonitor"),
    ),
}


def validate(obj: Manifest, version: str) -> None:
    schema = CUSTOM_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
    if schema is not None:
        jsonschema.validate(obj, schema)
    else:
        kubernetes_validate.validate(obj, version, strict=True)


def refusal(obj: Manifest, version: str) -> str | None:
    """Why ``obj`` does not validate (field path and message, without the whole schema)."""
    try:
        validate(obj, version)
    except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
        where = ".".join(str(part) for part in exc.path)
        return f"{obj['kind']}/{obj['metadata']['name']} ({version}): {where}: {exc.message}"
    return None


def test_every_kubectl_here_renders_both_overlays_alike(rendered: Rendered) -> None:
    for kubectl in (k for k in kubectls() if k.usable):
        for name in OVERLAY_NAMES:
            assert render(kubectl.path, name) == rendered[name], kubectl.describe()


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_every_object_validates_against_the_schemas(
    rendered: Rendered, overlay: str, version: str
) -> None:
    objects = rendered[overlay]
    assert [r for r in (refusal(o, version) for o in objects) if r is not None] == []
    assert sorted(o["kind"] for o in objects) == sorted(KINDS[overlay])


def test_the_schema_checks_refuse_a_misspelt_field(rendered: Rendered) -> None:
    objects = rendered["production"]
    deployment = copy.deepcopy(only(objects, "Deployment"))
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["periodSecond"] = probe.pop("periodSeconds")
    assert "'periodSecond' was unexpected" in str(refusal(deployment, SCHEMA_VERSIONS[0]))
    monitor = copy.deepcopy(only(objects, "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["scrapTimeout"] = "10s"
    assert "'scrapTimeout' was unexpected" in str(refusal(monitor, SCHEMA_VERSIONS[0]))


def test_no_secret_value_is_in_the_repository(rendered: Rendered) -> None:
    """Secrets come from llmserver-secrets, which the operator creates: no Secret object,
    no secretGenerator, and no secret setting in a ConfigMap."""
    for path in (ROOT / "ops/k8s").rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert not re.search(r"^kind:\s*Secret\b", text, re.MULTILINE), path
            assert "secretGenerator" not in text, path
    secret_settings = {"LLMSERVER_SERVER_SECRET", "LLMSERVER_UI_KEY", "HF_TOKEN"}
    for objects in rendered.values():
        for obj in objects:
            if obj["kind"] == "ConfigMap":
                data = obj["data"]
                assert not secret_settings & set(data)
                assert not any(
                    "@" in v for k, v in data.items() if k.endswith(("DATABASE_URL", "REDIS_URL"))
                ), "a URL with credentials belongs in the Secret"
        assert {name for name, _ in secret_refs(server(objects)).values()} == {SECRET_NAME}
