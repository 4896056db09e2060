"""The playground's Vite build, into a throwaway folder: what lands in dist and what it says."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"
VITE = FRONTEND / "node_modules" / ".bin" / "vite"


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    if not VITE.exists():
        pytest.skip("frontend dependencies missing: run make ui")
    dist = tmp_path_factory.mktemp("ui") / "dist"
    built = subprocess.run(
        [str(VITE), "build", "--outDir", str(dist), "--emptyOutDir"],
        cwd=FRONTEND,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return dist, built.stdout + built.stderr


def test_config_js_is_left_to_the_server_without_a_warning(build: tuple[Path, str]) -> None:
    dist, output = build
    assert "can't be bundled" not in output
    page = (dist / "index.html").read_text()
    # Still a classic script, before the app's module, so the config is there when it starts.
    assert '<script src="/ui/config.js" ></script>' in page
    assert page.index("/ui/config.js") < page.index('type="module"')
    assert not (dist / "config.js").exists()


def test_swagger_ui_is_in_the_build(build: tuple[Path, str]) -> None:
    dist, _ = build
    for name in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
        assert (dist / "swagger" / name).stat().st_size > 10_000, name


PLAYGROUND_ENTRY_BASELINE_BYTES = 239_655
"""The playground's entry script before the admin console existed (main at eb178bd). The
console may add at most 10% to what the playground loads first; when the playground itself
grows, measure the entry without the console again and update this."""


def _first_load(dist: Path) -> list[Path]:
    """The assets index.html loads before any code runs: scripts, styles, preloads."""
    page = (dist / "index.html").read_text()
    return [dist / "assets" / name for name in re.findall(r'/ui/assets/([^"]+)"', page)]


def test_the_admin_console_loads_only_on_its_own_path(build: tuple[Path, str]) -> None:
    dist, _ = build
    first = _first_load(dist)
    assert first
    assert not [p.name for p in first if p.name.startswith("AdminApp")]
    console = sorted((dist / "assets").glob("AdminApp-*"))
    assert {p.suffix for p in console} == {".js", ".css"}
    entry = next(p for p in first if p.suffix == ".js")
    # The console's code and its chart library are in its chunk, not in the entry.
    assert b"admin-key-input" in next(p for p in console if p.suffix == ".js").read_bytes()
    for marker in (b"admin-key-input", b"recharts"):
        assert marker not in entry.read_bytes(), marker
    assert entry.stat().st_size <= PLAYGROUND_ENTRY_BASELINE_BYTES * 1.10
