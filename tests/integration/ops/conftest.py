"""Fixtures for the ops tests: Debian's nginx run as a throwaway process, and a loopback
upstream standing in for Grafana, Prometheus and pgAdmin (which Debian does not package)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO

import pytest

from integration.ops.k8stools import OVERLAY_NAMES, Rendered, render, usable_kubectl
from integration.ops.opstools import (
    INSTALL_HINT,
    SSE_EVENTS,
    SSE_INTERVAL_S,
    Nginx,
    StartNginx,
    free_port,
    load_nginx_renderer,
    wait_for_port,
)


class _EchoHandler(BaseHTTPRequestHandler):
    """Answers with the path and headers it received; ``.../sse`` streams slow events."""

    def do_GET(self) -> None:
        if self.path.endswith("/sse"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for i in range(SSE_EVENTS):
                self.wfile.write(f"data: {i}\n\n".encode())
                self.wfile.flush()
                time.sleep(SSE_INTERVAL_S)
            return
        body = json.dumps({"path": self.path, "headers": dict(self.headers.items())}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def echo_upstream() -> Iterator[str]:
    """``host:port`` of a loopback HTTP server echoing each request."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    if found is None:
        pytest.skip(f"nginx is not installed: {INSTALL_HINT}")
    return found


@pytest.fixture
def start_nginx(nginx_binary: str, echo_upstream: str) -> Iterator[StartNginx]:
    """Starts nginx from the rendered template; keyword arguments override template values."""
    renderer = load_nginx_renderer()
    processes: list[subprocess.Popen[bytes]] = []
    logs: list[BinaryIO] = []
    # Not under tmp_path: when the suite runs as root, workers drop to nobody and must reach
    # their temp files (request bodies over 16 KiB), but pytest's base temp dir is 0700.
    dirs: list[tempfile.TemporaryDirectory[str]] = []

    def start(**values: str) -> Nginx:
        dirs.append(tempfile.TemporaryDirectory(prefix="llmserver-nginx-"))
        prefix = Path(dirs[-1].name)
        prefix.chmod(0o755)
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(
            renderer.render(
                {
                    "NGINX_PORT": f"127.0.0.1:{port}",
                    "NGINX_TEMP_DIR": str(prefix),
                    "NGINX_ACCESS_LOG": str(prefix / "access.log"),
                    "GRAFANA_UPSTREAM": echo_upstream,
                    "PROMETHEUS_UPSTREAM": echo_upstream,
                    "PGADMIN_UPSTREAM": echo_upstream,
                    **values,
                }
            )
        )
        logs.append((prefix / "error.log").open("wb"))
        process = subprocess.Popen(
            [nginx_binary, "-e", "stderr", "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=logs[-1],
        )
        processes.append(process)
        try:
            wait_for_port(port, process)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{exc}: {(prefix / 'error.log').read_text()}") from exc
        return Nginx(f"http://127.0.0.1:{port}", conf)

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)
    for log in logs:
        log.close()
    for directory in dirs:
        directory.cleanup()


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    kubectl = usable_kubectl()
    return {name: render(kubectl, name) for name in OVERLAY_NAMES}
