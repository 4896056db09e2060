"""The playground in real headless Chromium against a live server on the demo model.

``drive.mjs`` (playwright-core + Debian chromium) clicks through the page and reports what
it saw as JSON; this test asserts on that report. Screenshots land in tests/e2e/artifacts/.
Needs: ``scripts/install-browser.sh`` (chromium) and ``make ui`` (node_modules + dist).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from livesupport import LiveServer, free_port, start_server, stop_server

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "e2e" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")

# The first test also pays for the browser session in the module fixture: allow for a loaded box.
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]


def _requirements() -> str | None:
    if not CHROMIUM.exists():
        return "no /usr/bin/chromium: run scripts/install-browser.sh"
    if shutil.which("node") is None:
        return "no node on PATH"
    if not (REPO / "frontend" / "node_modules" / "playwright-core").is_dir():
        return "frontend dependencies missing: run make ui"
    if not (REPO / "frontend" / "dist" / "index.html").is_file():
        return "playground not built: run make ui"
    return None


def drive(base_url: str, key: str, scenario: str = "full") -> dict[str, Any]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    script = str(REPO / "tests/e2e/drive.mjs")
    done = subprocess.run(
        ["node", script, "--url", base_url, "--key", key, "--scenario", scenario],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=500,
        check=False,
    )
    # The key is a test key, but keep it out of failure output all the same.
    assert done.returncode == 0, (done.stdout + done.stderr).replace(key, "<key>")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


@pytest.fixture(scope="module")
def browser_ready() -> None:
    missing = _requirements()
    if missing:
        pytest.skip(missing)


@pytest.fixture(scope="module")
def report(browser_ready: None, live_server: LiveServer) -> dict[str, Any]:
    return drive(live_server.base_url, live_server.playground_key)


def test_models_are_listed_and_one_is_picked(report: dict[str, Any]) -> None:
    assert report["models"]
    assert report["model"] in report["models"]


def test_reply_streams_in_growing_steps(report: dict[str, Any]) -> None:
    assert report["status"] == "done"
    assert report["reply"]
    streaming = [o["length"] for o in report["lengths"] if o["status"] == "streaming"]
    growth = sorted({length for length in streaming if length > 0})
    # At least two different non-empty lengths seen before the reply completed.
    assert len(growth) >= 2, report["lengths"]
    assert streaming == sorted(streaming)
    final = [o["length"] for o in report["lengths"] if o["status"] == "done"]
    assert final
    assert final[-1] == len(report["reply"]) >= growth[-1]


def test_usage_is_shown(report: dict[str, Any]) -> None:
    usage = report["usage"]
    for label in ("prompt", "completion", "first token", "latency", "cache"):
        assert label in usage, usage


def test_curl_uses_the_variable_not_the_key(
    report: dict[str, Any], live_server: LiveServer
) -> None:
    assert "Bearer $LLMSERVER_API_KEY" in report["curl"]
    assert live_server.playground_key not in report["curl"]
    assert "/v1/chat/completions" in report["curl"]


def test_key_stays_in_session_storage(report: dict[str, Any]) -> None:
    assert report["sessionKeyStored"]
    assert report["localStorageEmpty"]
    assert not report["keyInUrl"]
    assert not report["keyInConsole"]


def test_stop_cancels_the_stream(report: dict[str, Any]) -> None:
    assert report["stopStatus"] == "stopped"
    assert report["stoppedReply"]


def test_reset_clears_the_conversation(report: dict[str, Any]) -> None:
    assert report["turnsAfterReset"] == 0


def test_a_bad_key_is_explained(report: dict[str, Any]) -> None:
    assert "401" in report["badKeyError"]


def test_no_page_errors(report: dict[str, Any]) -> None:
    errors = [line for line in report["console"] if line.startswith("pageerror")]
    # The only expected console error is the deliberate 401 of the bad-key step.
    resources = [line for line in report["console"] if line.startswith("error:")]
    assert not errors
    assert all("401" in line for line in resources), resources


def test_screenshots_saved(report: dict[str, Any]) -> None:
    shots = [Path(p) for p in report["screenshots"]]
    assert len(shots) == 5
    for shot in shots:
        assert shot.parent == ARTIFACTS
        assert shot.stat().st_size > 5_000


def test_operator_key_needs_no_typing(
    browser_ready: None, live_server: LiveServer, tmp_path: Path
) -> None:
    """A server started with LLMSERVER_UI_KEY serves a page that works without a pasted key."""
    # A second process on the live server's database: replicas share their limits there.
    env = {
        **live_server.env,
        "LLMSERVER_UI_KEY": live_server.playground_key,
        "LLMSERVER_DEPLOYMENT": "replicas",
    }
    port = free_port()
    process = start_server(env, tmp_path / "server.log", port)
    try:
        report = drive(f"http://127.0.0.1:{port}", live_server.playground_key, "operator-key")
    finally:
        stop_server(process)
    assert report["status"] == "done"
    assert "completion" in report["usage"]
    # The injected key is used, not copied into the browser's storage.
    assert report["storageEmpty"]


def test_openapi_renders_with_the_network_blocked(
    browser_ready: None, live_server: LiveServer
) -> None:
    """/openapi loads Swagger UI from the server itself: from a public CDN, it was blank offline."""
    report = drive(live_server.base_url, live_server.playground_key, "openapi")
    assert report["refused"] == []
    assert "LLM Server" in report["title"]
    assert {"/v1/chat/completions", "/v1/completions", "/v1/models"} <= set(report["paths"])


def test_a_chat_switched_to_the_messages_api_streams_its_reply_through_it(
    browser_ready: None, live_server: LiveServer
) -> None:
    report = drive(live_server.base_url, live_server.playground_key, scenario="messages")
    assert report["status"] == "done"
    assert report["reply"]
    assert "/v1/messages" in report["posted"]
    assert "/v1/chat/completions" not in report["posted"]
    assert "/v1/messages" in report["curl"]
    assert '"max_tokens": 24' in report["curl"]
