"""Several worker processes sharing one PROMETHEUS_MULTIPROC_DIR render merged metrics.

prometheus-client picks file-backed values when it is imported, so each worker is a real
subprocess started with the variable set, as ``llmserver serve`` workers would be.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from livesupport import free_port, migrate, server_env, start_server, stop_server

WORKER = textwrap.dedent(
    """
    import os, sys
    from llmserver.app.metrics import Metrics

    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    metrics = Metrics(allowed_models={"demo"}, multiprocess_dir=directory)
    for _ in range(int(sys.argv[1])):
        metrics.request_started("/v1/chat/completions")
        metrics.request_finished("/v1/chat/completions", 200, 0.1)
        metrics.tokens("demo", prompt=2, completion=3)
    metrics.request_started("/v1/chat/completions")  # still in flight when this worker stops
    metrics.model_loaded("demo", 1.0, loaded=True)
    if sys.argv[2] == "exit-cleanly":
        metrics.close()
    elif sys.argv[2] == "render":
        sys.stdout.buffer.write(metrics.render()[0])
    # "vanish": neither renders nor closes, like a worker that is killed
    """
)


def run_worker(env: dict[str, str], requests: int, mode: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(requests), mode],
        env=env,
        capture_output=True,
        check=True,
        timeout=60,
    )
    return done.stdout.decode()


def test_workers_sharing_a_directory_render_merged_values(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    run_worker(env, 3, "exit-cleanly")
    run_worker(env, 5, "vanish")
    body = run_worker(env, 4, "render")

    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(body)
        for s in f.samples
    }
    route = (("route", "/v1/chat/completions"),)
    count = (("route", "/v1/chat/completions"), ("status_class", "2xx"))
    # Each request's counts reach the shared files when it ends, even from a worker that
    # never renders or closes.
    assert found["llmserver_http_request_duration_seconds_count", count] == 12
    assert found["llmserver_prompt_tokens_total", (("model", "demo"),)] == 24
    # The worker that exited cleanly no longer counts as in flight; the one that vanished
    # still does (prometheus-client keeps a dead process's live gauges until it is marked).
    assert found["llmserver_http_requests_in_flight", route] == 2
    assert found["llmserver_model_loaded", (("model", "demo"),)] == 1


def test_live_server_renders_the_other_workers_values(tmp_path: Path, demo_model_dir: Path) -> None:
    """``llmserver serve`` with ``PROMETHEUS_MULTIPROC_DIR`` set answers ``/metrics`` with
    every worker's values, as the README promises for several workers on one port."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'llmserver.db'}"
    env = server_env(
        database_url,
        demo_model_dir,
        LLMSERVER_PROFILE="none",
        PROMETHEUS_MULTIPROC_DIR=str(directory),
    )
    migrate(database_url)
    run_worker(env, 3, "exit-cleanly")  # another worker's three requests
    port = free_port()
    process = start_server(env, tmp_path / "server.log", port)
    try:
        body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        stop_server(process)
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(body)
        for s in f.samples
    }
    count = (("route", "/v1/chat/completions"), ("status_class", "2xx"))
    assert found["llmserver_http_request_duration_seconds_count", count] == 3
