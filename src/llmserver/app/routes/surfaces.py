"""Every completion route's surface, by path: the completion lane's one look-up."""

from __future__ import annotations

from llmserver.app import paths
from llmserver.app.lane.surface import AnySurface
from llmserver.app.routes.anthropic.surface import MESSAGES
from llmserver.app.routes.openai.serving import CHAT, TEXT
from llmserver.app.routes.responses.surface import RESPONSES

SURFACES: dict[str, AnySurface] = {
    paths.CHAT_COMPLETIONS: CHAT,
    paths.COMPLETIONS: TEXT,
    paths.MESSAGES: MESSAGES,
    paths.RESPONSES: RESPONSES,
}
