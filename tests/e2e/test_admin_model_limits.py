"""The admin console's per-model limits in real headless Chromium against a live server:
``drive_model_limits.mjs`` gives a key an RPM, a TPM and a monthly token quota of 1 on the
model in its edit dialog, sees the API refuse that model (429 naming it), raises the quota,
sees the answer's tokens counted in the keys table, and removes the model's limits."""

from __future__ import annotations

from typing import Any

import pytest

from e2e.test_admin_console import drive_console, server
from livesupport import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

MODEL = "priced-demo"
"""The model ``server`` serves."""

__all__ = ["server"]  # a fixture: the console's own server, with one model


@pytest.fixture(scope="module")
def report(server: LiveServer) -> dict[str, Any]:
    return drive_console("drive_model_limits.mjs", server, "--model", MODEL)


def test_the_limits_set_in_the_editor_are_shown_and_enforced(report: dict[str, Any]) -> None:
    assert report["before"] == "none"
    assert report["shown"] == f"{MODEL}: 30 RPM · 5,000 TPM · 0 of 1 tokens this month"
    assert report["refused"]["status"] == 429
    assert f"quota on model {MODEL} exceeded" in report["refused"]["message"]
    assert "1 of 1 are left" in report["refused"]["message"]


def test_a_raised_quota_admits_and_counts_the_tokens_used(report: dict[str, Any]) -> None:
    assert report["quotaInEditor"] == "1"
    assert report["answered"]["status"] == 200
    used = report["answered"]["tokens"]
    assert report["counted"] == (
        f"{MODEL}: 30 RPM · 5,000 TPM · {used:,} of 100,000 tokens this month"
    )


def test_removed_limits_are_gone_and_the_model_answers(report: dict[str, Any]) -> None:
    assert report["after"] == "none"
    assert report["afterRemoval"]["status"] == 200


def test_no_serious_accessibility_violations_or_page_errors(report: dict[str, Any]) -> None:
    assert report["axe"] == {"keys-edit-model-limits": []}
    assert report["console"] == []
