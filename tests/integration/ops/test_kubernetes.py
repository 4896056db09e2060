"""The Kubernetes manifests (ops/k8s), checked without a cluster: what they assume about
the app is read from the app itself (its routes, its settings' defaults and parsing, its
image's name and user). ``test_kubernetes_schemas`` validates them against Kubernetes'.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import yaml

from integration.ops.k8stools import (
    OVERLAY_NAMES,
    SECRET_NAME,
    Rendered,
    containers,
    matches,
    only,
    pod_labels,
    pod_specs,
    seconds,
    secret_refs,
    server,
    settings_of,
)
from integration.ops.opstools import ROOT
from llmserver.adapters.otel_tracer import CLOSE_TIMEOUT_S
from llmserver.app import paths
from llmserver.app.factory import create_app
from llmserver.app.settings import Settings, load_settings

EXIT_FLUSH_S = 5
"""What the app needs after the drain: the request-log, usage and cache flushes and the
database's close (docs/reliability.md measures SIGTERM to exit in 2.4-2.6 s with 20-60
streams)."""

APPLY_FIRST = "-l 'app.kubernetes.io/component in (config,migrate)'"
WAIT_FOR_JOB = "kubectl -n llmserver wait --for=condition=complete job/llmserver-migrate"


@pytest.fixture(scope="module")
def app_routes() -> set[str]:
    # Building the app in-process meets Litestar's deprecation of inferred path parameters
    # (``model_id: str``), which the suite's filterwarnings would turn into an error.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="litestar")
        app = create_app(Settings(profile="none"))
    return {route.path for route in app.routes}


def test_the_settings_offered_commented_out_are_settings_the_app_accepts(tmp_path: Path) -> None:
    """An operator uncomments them as they are: each must be a real setting, valid as given."""
    text = (ROOT / "ops/k8s/base/settings.env").read_text()
    offered = dict(re.findall(r"^# (LLMSERVER_[A-Z0-9_]+)=(.*)$", text, re.MULTILINE))
    assert {"LLMSERVER_OTEL_ENDPOINT", "LLMSERVER_LOG_RETENTION_DAYS"} <= offered.keys()
    assert "LLMSERVER_CACHE_MAX_ROWS" in offered
    known = {f"LLMSERVER_{name.upper()}" for name in Settings.__struct_fields__}
    assert offered.keys() <= known
    settings = load_settings(offered, root=tmp_path)
    assert (settings.log_retention_days, settings.cache_max_rows) == (90, 100_000)


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_the_settings_load_as_the_app_reads_them(
    rendered: Rendered, overlay: str, tmp_path: Path
) -> None:
    """The server's environment, with the Secret's keys filled in, is one the app accepts."""
    objects = rendered[overlay]
    api = server(objects)
    env = settings_of(objects, api)
    stand_ins = {
        "LLMSERVER_SERVER_SECRET": "k8s-test-secret-" + "abcdefghijklmnopqrstuvwxyz",
        "LLMSERVER_DATABASE_URL": "postgresql+asyncpg://u:p@db:5432/llmserver",
        "LLMSERVER_REDIS_URL": "redis://:p@redis:6379/0",
        "HF_TOKEN": "hf_x",
    }
    for variable in secret_refs(api):
        env[variable] = stand_ins[variable]
    known = {f"LLMSERVER_{name.upper()}" for name in Settings.__struct_fields__}
    assert {k for k in env if k.startswith("LLMSERVER_")} <= known
    settings = load_settings(env, root=tmp_path)
    settings.require_server_secret()
    if overlay == "embedded":
        assert settings.is_sqlite
        assert settings.single_process
    else:
        assert not settings.is_sqlite
        assert not settings.single_process
        assert settings.redis_url is not None


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_probes_and_port_are_the_apps(
    rendered: Rendered, overlay: str, app_routes: set[str]
) -> None:
    objects = rendered[overlay]
    api = server(objects)
    (port,) = api["ports"]
    default = Settings().port
    assert port == {"name": "http", "containerPort": default}
    assert settings_of(objects, api)["LLMSERVER_PORT"] == str(default)
    liveness, readiness = api["livenessProbe"], api["readinessProbe"]
    assert liveness["httpGet"] == {"path": paths.HEALTHZ, "port": "http"}
    assert readiness["httpGet"] == {"path": paths.READYZ, "port": "http"}
    assert {paths.HEALTHZ, paths.READYZ} <= app_routes
    service = only(objects, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert matches(service["spec"]["selector"], pod_labels(objects))


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_grace_period_covers_the_prestop_wait_the_drain_and_the_flushes(
    rendered: Rendered, overlay: str
) -> None:
    objects = rendered[overlay]
    api = server(objects)
    drain = float(settings_of(objects, api)["LLMSERVER_SHUTDOWN_DRAIN_S"])
    assert drain == Settings().shutdown_drain_s
    command = api["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    assert pre_stop >= 1, "the endpoints' removal needs time to reach every proxy"
    grace = only(objects, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    # With LLMSERVER_OTEL_ENDPOINT set, the tracer's last export comes after the flushes.
    assert grace >= pre_stop + drain + EXIT_FLUSH_S + CLOSE_TIMEOUT_S


def test_the_image_is_the_one_the_dockerfile_and_compose_build(rendered: Rendered) -> None:
    dockerfile = (ROOT / "ops/docker/Dockerfile").read_text()
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    built = re.search(r"docker build -f ops/docker/Dockerfile -t (\S+) \.", dockerfile)
    assert built is not None
    compose_default = re.fullmatch(
        r"\$\{LLMSERVER_IMAGE:-(.+)\}", compose["services"]["api"]["image"]
    )
    assert compose_default is not None
    assert built[1] == compose_default[1]
    uid = re.search(r"^ARG UID=(\d+)$", dockerfile, re.MULTILINE)
    assert uid is not None
    for objects in rendered.values():
        for name, spec in pod_specs(objects):
            assert spec["securityContext"]["runAsUser"] == int(uid[1]), name
            for container in containers(spec):
                assert container["image"] == built[1], (name, container["name"])


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_containers_run_unprivileged_on_a_read_only_root(rendered: Rendered, overlay: str) -> None:
    """What the app writes has a volume: TMPDIR (/tmp: temporary files, torch's compile
    cache, the metrics directory of `serve --workers N`), HF_HOME (/data/huggingface, the
    image's ENV) and the SQLite file's directory."""
    objects = rendered[overlay]
    hf_home = re.search(r"HF_HOME=(\S+)", (ROOT / "ops/docker/Dockerfile").read_text())
    assert hf_home is not None
    for name, spec in pod_specs(objects):
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        # A Service's links would put LLMSERVER_PORT=tcp://... into the app's settings.
        assert spec["enableServiceLinks"] is False
        volumes = {v["name"] for v in spec["volumes"]}
        for container in containers(spec):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert set(mounts.values()) <= volumes
            writable = ["/tmp"]
            if container["args"] == ["serve"]:
                writable.append(hf_home[1])
            url = settings_of(objects, container).get("LLMSERVER_DATABASE_URL", "")
            if url.startswith("sqlite"):
                writable.append(str(Path(url.split(":///", 1)[1]).parent))
            for path in writable:
                assert any(Path(path).is_relative_to(m) for m in mounts), (name, path)


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_torch_threads_fit_the_cpu_limit(rendered: Rendered, overlay: str) -> None:
    objects = rendered[overlay]
    api = server(objects)
    threads = int(settings_of(objects, api)["LLMSERVER_TORCH_THREADS"])
    resources = api["resources"]
    assert set(resources) == {"requests", "limits"}
    assert threads <= float(resources["limits"]["cpu"])


def test_ingress_streams_events_and_keeps_internal_routes_inside(
    rendered: Rendered, app_routes: set[str]
) -> None:
    ingress = only(rendered["production"], "Ingress")
    notes = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    defaults = Settings()
    assert notes[prefix + "proxy-buffering"] == "off"
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(notes[prefix + timeout]) > defaults.request_timeout_s
    assert notes[prefix + "proxy-body-size"] == f"{defaults.max_body_bytes // 1024 // 1024}m"
    routed = [p for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    prefixes = [p["path"] for p in routed]
    assert all(p["pathType"] == "Prefix" for p in routed)
    assert all(p["backend"]["service"]["port"]["name"] == "http" for p in routed)

    def exposed(route: str) -> bool:
        return any(route == p or route.startswith(p.rstrip("/") + "/") for p in prefixes)

    for p in prefixes:
        assert any(exposed(route) for route in app_routes), f"{p} matches no route of the app"
    for internal in (paths.METRICS, paths.HEALTHZ, paths.READYZ):
        assert not exposed(internal)
    for public in (paths.CHAT_COMPLETIONS, paths.MODELS, paths.UI, paths.OPENAPI):
        assert exposed(public), public


def test_service_monitor_scrapes_the_metrics_route(
    rendered: Rendered, app_routes: set[str]
) -> None:
    objects = rendered["production"]
    monitor = only(objects, "ServiceMonitor")
    service = only(objects, "Service")
    assert matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == paths.METRICS
    assert paths.METRICS in app_routes
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert seconds(endpoint["scrapeTimeout"]) <= seconds(endpoint["interval"])


def test_production_migrates_with_a_job_applied_before_the_rollout(rendered: Rendered) -> None:
    """The overlay's recipe applies `component in (config, migrate)` first and waits for
    the Job: that selection must hold the Job and every ConfigMap it reads, and nothing else."""
    objects = rendered["production"]
    job = only(objects, "Job")
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    api = server(objects)
    assert migrate["args"] == ["migrate"]
    assert migrate["image"] == api["image"]
    assert migrate["envFrom"] == api["envFrom"]
    assert secret_refs(migrate) == {
        "LLMSERVER_DATABASE_URL": secret_refs(api)["LLMSERVER_DATABASE_URL"]
    }
    first = [
        o
        for o in objects
        if o["metadata"]["labels"].get("app.kubernetes.io/component") in ("config", "migrate")
    ]
    assert sorted(o["kind"] for o in first) == ["ConfigMap", "Job"]
    read = {source["configMapRef"]["name"] for source in migrate["envFrom"]}
    assert read == {o["metadata"]["name"] for o in first if o["kind"] == "ConfigMap"}
    recipe = (ROOT / "ops/k8s/overlays/production/kustomization.yaml").read_text()
    assert APPLY_FIRST in recipe
    assert WAIT_FOR_JOB in recipe


def test_embedded_migrates_in_an_init_container_on_the_databases_volume(
    rendered: Rendered,
) -> None:
    objects = rendered["embedded"]
    deployment = only(objects, "Deployment")
    spec = deployment["spec"]
    # One pod owns the SQLite file: never two at once, not even during an update.
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    (migrate,) = spec["template"]["spec"]["initContainers"]
    api = server(objects)
    assert migrate["args"] == ["migrate"]
    assert migrate["envFrom"] == api["envFrom"]
    data = {m["name"] for m in api["volumeMounts"] if m["mountPath"] == "/data"}
    assert data <= {m["name"] for m in migrate["volumeMounts"]}
    (volume,) = [v for v in spec["template"]["spec"]["volumes"] if v["name"] in data]
    claim = only(objects, "PersistentVolumeClaim")
    assert volume == {
        "name": volume["name"],
        "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]},
    }


def test_production_rolls_and_scales_without_dropping_capacity(rendered: Rendered) -> None:
    objects = rendered["production"]
    deployment = only(objects, "Deployment")
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    hpa = only(objects, "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    # Utilization is a share of the request: the container must request CPU.
    assert "cpu" in server(objects)["resources"]["requests"]
    pdb = only(objects, "PodDisruptionBudget")
    assert matches(pdb["spec"]["selector"]["matchLabels"], pod_labels(objects))
    assert pdb["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]


def test_the_readme_applies_what_the_overlays_say(rendered: Rendered) -> None:
    readme = (ROOT / "README.md").read_text()
    section = re.split(r"\n##+ ", readme.split("\n### Kubernetes\n", 1)[1], maxsplit=1)[0]
    for overlay in OVERLAY_NAMES:
        assert f"ops/k8s/overlays/{overlay}" in section
    assert f"create secret generic {SECRET_NAME}" in section
    assert APPLY_FIRST in section
    assert WAIT_FOR_JOB in section
    keys: set[str] = set()
    for objects in rendered.values():
        keys |= {key for _, key in secret_refs(server(objects)).values()}
    for key in keys - {"HF_TOKEN"}:
        assert key in section, f"the README does not say to put {key} in the Secret"
