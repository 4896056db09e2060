from __future__ import annotations

from pathlib import Path

import pytest
from litestar.routes import ASGIRoute

from llmserver.app.factory import create_app
from llmserver.app.routes.anthropic.routes import messages
from llmserver.app.routes.openai.routes import chat_completions, completions
from llmserver.app.routes.responses.routes import responses
from llmserver.app.routes.surfaces import SURFACES
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
    handlers = {chat_completions.fn, completions.fn, messages.fn, responses.fn}
    routed = {
        route.path
        for route in app.routes
        if isinstance(route, ASGIRoute) and route.route_handler.fn in handlers
    }
    assert (
        routed
        == set(SURFACES)
        == {
            "/v1/chat/completions",
            "/v1/completions",
            "/v1/messages",
            "/v1/responses",
        }
    )
