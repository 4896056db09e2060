"""Helpers shared by the ops tests (a plain module: conftest.py holds only fixtures)."""

from __future__ import annotations

import importlib.util
import json
import re
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[3]
INSTALL_HINT = "run scripts/install-ops-tools.sh (Debian nginx, prometheus, strace)"

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


# Dashboards and PromQL.

DASHBOARDS = sorted((ROOT / "ops/grafana/dashboards").glob("*.json"))

PROMETHEUS_SYNTHETIC = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    }
)
"""Series Prometheus itself writes for every target; the system view charts them."""

_PROMQL_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"bool", "offset", "inf", "nan"}
)
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# A whole identifier (not the tail of a number or a $variable) that is not a function call.
_IDENTIFIER = re.compile(r"(?<![\w:.$])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()")

GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$model": ".*"}
"""Stand-ins that turn a dashboard query into plain PromQL (for promtool)."""


def dashboard_expressions(paths: Sequence[Path] = DASHBOARDS) -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, PromQL) for every panel target and query variable."""
    found: list[tuple[str, str, str]] = []
    for path in paths:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                found.append((path.name, panel["title"], target["expr"]))
        for variable in board.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                query = variable["query"]
                text = query["query"] if isinstance(query, dict) else query
                inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", text)
                found.append((path.name, f"${variable['name']}", inner[1] if inner else text))
    return found


def metric_names_in_expression(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels, keywords left out)."""
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _PROMQL_KEYWORDS}


def metric_names_in_dashboards(paths: Sequence[Path] = DASHBOARDS) -> set[str]:
    return {
        name
        for _, _, expr in dashboard_expressions(paths)
        for name in metric_names_in_expression(expr)
    }


def exported_metric_names(exposition: str) -> set[str]:
    """Every series name an exposition offers, including those of families without samples
    yet (a labelled counter nobody has incremented still announces its name and type)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
        "gauge": ("",),
        "untyped": ("",),
    }
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def plain_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr
