"""Helpers shared by the ops tests (a plain module: conftest.py holds only fixtures)."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[3]
INSTALL_HINT = "run scripts/install-ops-tools.sh (Debian nginx + prometheus)"

SSE_EVENTS = 5
SSE_INTERVAL_S = 0.2


def load_nginx_renderer() -> ModuleType:
    """ops/nginx/render.py, which is a script, not part of the package."""
    spec = importlib.util.spec_from_file_location("nginx_render", ROOT / "ops/nginx/render.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {port} after {timeout_s}s")


@dataclass(frozen=True, slots=True)
class Nginx:
    base_url: str
    conf: Path


StartNginx = Callable[..., Nginx]
