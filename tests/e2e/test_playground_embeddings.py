"""The playground's Embeddings tab in real headless Chromium against a live server: two texts
embedded by the demo embedding model and their cosine similarity shown."""

from __future__ import annotations

from typing import Any

import pytest

from e2e.test_playground import browser_ready, drive
from livesupport import LiveServer

__all__ = ["browser_ready"]  # the module fixture, shared with the chat page's tests

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def report(browser_ready: None, live_server: LiveServer) -> dict[str, Any]:
    return drive(live_server.base_url, live_server.playground_key, scenario="embeddings")


def _value(shown: str) -> float:
    return float(shown.split()[0])


def test_the_tab_lists_embedding_models_and_the_chat_picker_does_not(
    report: dict[str, Any],
) -> None:
    assert report["embeddingModels"] == ["demo-embed"]
    assert "demo-embed" not in report["chatModels"]
    assert report["chatHidden"]


def test_the_similarity_of_two_texts_is_shown(report: dict[str, Any]) -> None:
    different, same = _value(report["different"]), _value(report["same"])
    assert same == pytest.approx(1.0, abs=1e-3)
    assert -1.0 <= different < same
    assert "cosine similarity" in report["different"]
    assert "64 dimensions" in report["different"]


def test_no_page_errors(report: dict[str, Any]) -> None:
    assert not [line for line in report["console"] if line.startswith(("pageerror", "error:"))]
