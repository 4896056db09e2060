"""The Messages API as a surface of the completion lane."""

from __future__ import annotations

from llmserver.app.lane.surface import Surface
from llmserver.app.routes.anthropic import protocol as a
from llmserver.app.routes.anthropic.serving import answer, error_answer, to_domain
from llmserver.app.routes.anthropic.streaming import message_events

MESSAGES: Surface[a.MessagesRequest] = Surface(
    a.MESSAGES_DECODER, to_domain, answer, message_events, error_answer
)
