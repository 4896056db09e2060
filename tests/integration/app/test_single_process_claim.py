"""Two single-process servers on one database would each trust their own quota ledger:
the second one refuses to start and says what to do instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from livesupport import free_port, migrate, server_env, spawn_server, start_server, stop_server

pytestmark = pytest.mark.slow


def test_a_second_single_process_server_on_the_same_database_refuses_to_start(
    tmp_path: Path, demo_model_dir: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    env = server_env(url, demo_model_dir, LLMSERVER_PROFILE="none")
    migrate(url)
    first = start_server(env, tmp_path / "first.log", free_port())
    try:
        second = spawn_server(env, tmp_path / "second.log", free_port())
        assert second.wait(timeout=120) != 0
        log = (tmp_path / "second.log").read_text()
        assert "another single-process LLM Server already uses this database" in log
        assert "LLMSERVER_DEPLOYMENT=replicas" in log
    finally:
        stop_server(first)
    # Once the first has stopped, the database is free again.
    stop_server(start_server(env, tmp_path / "third.log", free_port()))
