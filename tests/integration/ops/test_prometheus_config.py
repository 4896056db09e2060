"""ops/prometheus/prometheus.yml passes promtool, and every dashboard query is valid PromQL."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from integration.ops.opstools import INSTALL_HINT, ROOT, dashboard_expressions, plain_promql

PROMETHEUS_CONFIG = ROOT / "ops/prometheus/prometheus.yml"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip(f"promtool is not installed: {INSTALL_HINT}")
    return found


def test_promtool_accepts_the_scrape_config(promtool: str) -> None:
    checked = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_app_is_scraped_on_its_metrics_path() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    # The dashboards select job="llmserver".
    assert jobs["llmserver"]["metrics_path"] == "/metrics"
    assert jobs["llmserver"]["dns_sd_configs"] == [
        {"names": ["api"], "type": "A", "port": 8000, "refresh_interval": "30s"}
    ]


def test_every_dashboard_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    """promtool has no expression checker, but it parses every expression of a rule file."""
    expressions = dashboard_expressions()
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": plain_promql(expr)}
                    for i, (_, _, expr) in enumerate(expressions)
                ],
            }
        ]
    }
    rule_file = tmp_path / "dashboards.rules.yml"
    rule_file.write_text(yaml.safe_dump(rules))
    checked = subprocess.run(
        [promtool, "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in checked.stdout
