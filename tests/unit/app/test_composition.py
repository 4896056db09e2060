"""``build_services`` wires a server without starting any of it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from llmserver.adapters.write_behind import WriteBehindUsageStore
from llmserver.app.composition import build_services
from llmserver.app.settings import Deployment, Settings

SECRET = "composition-test-secret-0123456789-abcdef"


def _settings(
    tmp_path: Path, deployment: Deployment = Deployment.AUTO, profile: str = "none"
) -> Settings:
    url = f"sqlite+aiosqlite:///{tmp_path / 'built.db'}"
    return Settings(database_url=url, server_secret=SECRET, profile=profile, deployment=deployment)


async def test_building_starts_no_task_and_opens_no_database(tmp_path: Path) -> None:
    before = asyncio.all_tasks()

    composed = build_services(_settings(tmp_path, profile="demo"))

    assert asyncio.all_tasks() == before
    # SQLite creates its file on the first connection: there was none.
    assert not (tmp_path / "built.db").exists()
    assert composed.services.checks == {}  # registered by the lifecycle as it starts
    # The demo model (whose directory does not even exist) waits for the lifecycle to load it.
    assert composed.models is composed.backends
    assert [(s.model_id, s.ready, s.error) for s in composed.backends.statuses()] == [
        ("demo-tiny-llama", False, "pending"),
        ("demo-embed", False, "pending"),
    ]


def test_the_deployment_picks_the_usage_store(tmp_path: Path) -> None:
    single = build_services(_settings(tmp_path, deployment=Deployment.SINGLE))
    replicas = build_services(_settings(tmp_path, deployment=Deployment.REPLICAS))

    assert isinstance(single.state.usage, WriteBehindUsageStore)
    assert single.state.owned is not None
    assert replicas.state.usage is replicas.database.usage
    assert replicas.state.owned is None
