"""The admin console's Teams page in real headless Chromium against a live server:
``drive_teams.mjs`` creates a team with every limit, meets the API's refusals in words,
puts a new key in the team on the Keys page, sees the team's RPM refuse it, raises the RPM
in the team's editor and sees the new one enforced, then moves the key to another team and
out of any; axe-core checks every state of the page."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from e2e.test_admin_console import drive_console, server
from e2e.test_playground import ARTIFACTS
from livesupport import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

MODEL = "priced-demo"
"""The model ``server`` serves, with prices: the team's budget shows real spend."""
TEAM = "e2e team"

__all__ = ["server"]  # a fixture: the console's own server, with one model


@pytest.fixture(scope="module")
def report(server: LiveServer) -> dict[str, Any]:
    return drive_console("drive_teams.mjs", server, "--model", MODEL)


def test_a_team_is_created_with_every_limit(report: dict[str, Any]) -> None:
    assert report["created"] == {
        "members": "none",
        "rpm": "2",
        "quota": "1,000,000",
        "tpm": "100,000",
        "parallel": "4",
        "budget": "$0.00 of $5.00 / week",
    }
    assert report["formCleared"]


def test_the_page_reads_every_team_in_one_listing(report: dict[str, Any]) -> None:
    reads = report["teamReads"]
    # Loaded empty, after each change and in the dark scheme: one listing each time, with
    # every team's usage, and no read per team however many there are.
    assert reads["listWithUsage"] >= 3
    assert reads["one"] == 0


def test_refusals_are_shown_in_words(report: dict[str, Any]) -> None:
    errors = report["errors"]
    # The API's 400s, with what it said.
    assert errors["taken"] == f"Request failed (400): A team named '{TEAM}' exists already."
    assert errors["budget"].startswith("Request failed (400): budget_usd ")
    assert errors["rename"] == "Request failed (400): A team named 'other team' exists already."
    # The console's own check, before any request.
    assert errors["rpm"] == "Requests per minute: at least 1, or blank for no limit."


def test_a_key_put_in_the_team_is_held_to_the_team_rpm(report: dict[str, Any]) -> None:
    assert report["keyTeam"] == TEAM
    assert [s["status"] for s in report["sent"]] == [200, 200, 429]
    assert f"2 requests per minute for team '{TEAM}'" in report["sent"][2]["message"]


def test_the_team_shows_its_keys_usage_and_spend(report: dict[str, Any]) -> None:
    assert report["members"] == "1"
    assert report["usage"].endswith(" tokens, 2 requests")
    assert Decimal(report["spent"]) > 0
    assert report["budgetShown"] == f"${report['spent']} of $5.00 / week"


def test_an_edited_team_rpm_is_enforced(report: dict[str, Any]) -> None:
    assert (report["rpmInEditor"], report["windowInEditor"]) == ("2", "week")
    assert report["rpmShown"] == "3"
    *admitted, refused = report["afterEdit"]
    assert admitted
    assert {a["status"] for a in admitted} == {200}
    assert refused["status"] == 429
    assert f"3 requests per minute for team '{TEAM}'" in refused["message"]


def test_a_key_changes_team_and_leaves_it_audited(report: dict[str, Any]) -> None:
    assert report["movedTo"] == "other team"
    assert report["afterMove"]["status"] == 200  # out of the team its RPM refuses
    assert report["clearedTo"] == "none"
    cleared, moved = report["keyAudit"][:2]  # newest first
    assert cleared == {"team_id": None}
    assert list(moved) == ["team_id"]
    assert moved["team_id"]


def test_no_serious_accessibility_violations_or_page_errors(report: dict[str, Any]) -> None:
    assert report["axe"] == {
        "teams-empty": [],
        "teams-create-error": [],
        "teams-list": [],
        "teams-edit": [],
        "teams-phone-dark": [],
    }
    assert report["console"] == []


def test_screenshot_saved(report: dict[str, Any]) -> None:
    shot = Path(report["screenshot"])
    assert shot.parent == ARTIFACTS
    assert shot.stat().st_size > 5_000
