"""The admin console in real headless Chromium against a live server on the demo model.

``drive_admin.mjs`` signs in with an admin key, creates a key and uses it from the
playground, lowers its RPM until the playground gets a 429, revokes it until it gets a 401,
then finds its requests in the logs (the prompt's markup shown as text), the usage chart
and the audit trail, checks models and purges the cache; axe-core runs on every page.
Screenshots land in tests/e2e/artifacts/ (copied to docs/screenshots/ for the README).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from e2e.test_playground import ARTIFACTS, REPO, _requirements
from livesupport import LiveServer, running_server

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

PAGES = ("sign-in", "keys-with-secret", "keys-edit", "logs", "usage", "audit", "models", "cache")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, demo_model_dir: Path) -> Iterator[LiveServer]:
    missing = _requirements()
    if missing:
        pytest.skip(missing)
    # A server of its own: request bodies are logged here (the logs page shows them), and
    # the console's RPM edit and revocation must not touch the shared server's keys.
    # Its model is the demo model with prices, so that the pages show real costs.
    root = tmp_path_factory.mktemp("admin-console")
    models = root / "models.toml"
    models.write_text(
        '[[models]]\nid = "priced-demo"\nbackend = "torch"\n'
        f'source = "{demo_model_dir}"\ndevice = "cpu"\ndtype = "float32"\n'
        'context_length = 512\ninput_price_per_mtok = "2.5"\noutput_price_per_mtok = "10"\n'
    )
    with running_server(
        root,
        demo_model_dir,
        LLMSERVER_LOG_BODIES="true",
        LLMSERVER_PROFILE="none",
        LLMSERVER_MODELS_FILE=str(models),
    ) as live:
        yield live


def drive_console(script: str, server: LiveServer, *args: str) -> dict[str, Any]:
    """Runs the console driver ``tests/e2e/<script>`` on ``server`` with its admin key (and
    ``args``); the JSON object it printed last, also kept in the artifacts."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver = str(REPO / "tests/e2e" / script)
    done = subprocess.run(
        ["node", driver, "--url", server.base_url, "--key", server.admin_key, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=500,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr).replace(server.admin_key, "<key>")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    (ARTIFACTS / script.replace(".mjs", "-report.json")).write_text(json.dumps(result, indent=1))
    return result


@pytest.fixture(scope="module")
def report(server: LiveServer) -> dict[str, Any]:
    return drive_console("drive_admin.mjs", server)


def test_sign_in_keeps_the_key_in_session_storage_only(report: dict[str, Any]) -> None:
    assert report["adminKeyStored"]
    assert report["storageAfterSignOut"] is None
    assert not report["keyInUrl"]
    assert not report["keyInConsole"]


def test_a_created_key_is_shown_once_with_a_copy_button(report: dict[str, Any]) -> None:
    assert report["copyLabel"] == "Copied"
    assert report["clipboardHasSecret"]
    assert report["secretGone"]
    assert report["searchRows"] == [report["prefix"]]


def test_the_new_key_works_then_hits_its_new_rpm_then_is_refused_once_revoked(
    report: dict[str, Any],
) -> None:
    assert report["firstSend"]["status"] == "done"
    assert report["rpmShown"] == "1"
    # Created with a $5 weekly budget: the first reply's cost is shown spent of it.
    assert Decimal(report["budgetSpent"]) > 0
    assert report["budgetShown"] == f"${report['budgetSpent']} of $5.00 / week"
    refused = [s["error"] for s in report["limited"] if s["status"] == "error"]
    assert refused
    assert all("429" in text for text in refused), refused
    assert report["afterRevoke"]["status"] == "error"
    assert "401" in report["afterRevoke"]["error"]


def test_its_requests_are_in_the_logs_with_the_markup_as_text(report: dict[str, Any]) -> None:
    assert 200 in report["logStatuses"]
    assert 429 in report["logStatuses"]
    # The body is the request's JSON, so its quotes are escaped there.
    assert '<img src=x onerror=\\"window.__injected=1\\">' in report["logBodyText"]
    assert '<b id=\\"injected\\">bold</b>' in report["logBodyText"]
    assert report["injectedElements"] == 0
    assert report["injectedScript"] is None


def test_its_usage_is_charted_and_downloadable(report: dict[str, Any]) -> None:
    assert report["usageRequests"] >= 2
    assert report["usageLabel"].startswith("e2e console key")
    assert report["chartBars"] >= 1
    assert any(text.startswith("e2e console key") for text in report["chartLegend"])
    assert report["csvName"].startswith("usage-")
    assert report["csvHasKey"]
    # The key's cost in the top table is the exact sum of its answered requests' costs.
    costs = [Decimal(c.removeprefix("$")) for c in report["logCosts"]]
    assert any(cost > 0 for cost in costs)
    assert Decimal(report["usageCost"].removeprefix("$")) == sum(costs)


def test_the_actions_are_in_the_audit_trail(report: dict[str, Any]) -> None:
    assert report["auditActions"] == ["key.revoke", "key.update", "key.create"]
    assert "rpm_limit: 60" in report["auditText"]
    assert "rpm_limit: 1" in report["auditText"]
    assert "llms_" not in report["auditText"]


def test_models_and_cache(report: dict[str, Any]) -> None:
    assert report["models"] >= 1
    assert report["purgeResult"].startswith("Removed")
    assert report["cacheEntriesAfter"] == 0


def test_no_serious_accessibility_violations(report: dict[str, Any]) -> None:
    assert set(PAGES) <= set(report["axe"])
    assert {page: found for page, found in report["axe"].items() if found} == {}


def test_no_page_errors(report: dict[str, Any]) -> None:
    assert not [line for line in report["console"] if line.startswith("pageerror")]
    # Resource errors expected: the deliberate 429 and 401 answers (logged by the browser).
    errors = [line for line in report["console"] if line.startswith("error:")]
    assert all("429" in line or "401" in line for line in errors), errors


def test_screenshots_saved(report: dict[str, Any]) -> None:
    shots = [Path(p) for p in report["screenshots"]]
    assert len(shots) == 7
    for shot in shots:
        assert shot.parent == ARTIFACTS
        assert shot.stat().st_size > 5_000
