from __future__ import annotations

from pathlib import Path

import pytest

from llmserver.app.factory import create_app
from llmserver.app.routes.openai.routes import CompletionLane
from llmserver.app.settings import Settings


# Building the app in-process meets Litestar's deprecation of inferred path parameters
# (``model_id: str``, ``key_id: str``); the live-server tests see it as a log line.
@pytest.mark.filterwarnings("ignore::DeprecationWarning:litestar.*")
def test_the_lane_takes_exactly_the_paths_litestar_routes_to_the_completion_handlers(
    tmp_path: Path,
) -> None:
    app = create_app(
        Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'lane.db'}", profile="none")
    )
    lane = CompletionLane(app, enabled=True)
    assert lane._paths == {"/v1/chat/completions": True, "/v1/completions": False}
