"""The playground's Vite build, into a throwaway folder: what lands in dist and what it says."""

from __future__ import annotations

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
