"""LLMSERVER_UI_KEY is published to every visitor of /ui, so it must not be an admin key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from livesupport import LiveServer, free_port, start_server, stop_server

pytestmark = pytest.mark.slow


def test_server_refuses_an_admin_key_as_playground_key(
    live_server: LiveServer, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    # A second process on the live server's database: replicas share their limits there.
    env = {
        **live_server.env,
        "LLMSERVER_UI_KEY": live_server.admin_key,
        "LLMSERVER_DEPLOYMENT": "replicas",
    }
    started: list[Any] = []
    try:
        with pytest.raises(RuntimeError, match="server exited"):
            started.append(start_server(env, log, free_port()))
    finally:
        # Only when the check is missing: do not leave a wrongly started server running.
        for process in started:
            stop_server(process)
    text = log.read_text()
    assert "LLMSERVER_UI_KEY" in text
    assert live_server.admin_key not in text
