"""The bare-metal systemd units pass ``systemd-analyze verify``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from integration.ops.opstools import ROOT

UNITS = ROOT / "ops/systemd"


def test_units_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # The units expect the checkout in /opt/llmserver: point them at this one, so verify can
    # check that the commands they run exist; the template gets an instance (a port).
    names = {"llmserver@.service": "llmserver@8000.service"}
    for unit in UNITS.glob("*.service"):
        text = unit.read_text().replace("/opt/llmserver", str(ROOT))
        (tmp_path / names.get(unit.name, unit.name)).write_text(text)
    checked = subprocess.run(
        [analyze, "verify", "--man=false", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stderr
    # verify only warns about unknown or misplaced settings.
    assert "Unknown" not in checked.stderr
    assert "ignoring" not in checked.stderr, checked.stderr


def test_instances_run_the_serve_command_on_their_port() -> None:
    unit = (UNITS / "llmserver@.service").read_text()
    assert "ExecStart=/opt/llmserver/.venv/bin/llmserver serve --port %i" in unit
    assert "Requires=llmserver-migrate.service" in unit
