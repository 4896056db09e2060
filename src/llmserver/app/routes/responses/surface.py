"""The Responses API as a surface of the completion lane; its errors are OpenAI's."""

from __future__ import annotations

from llmserver.app.lane.replies import JsonReply
from llmserver.app.lane.surface import Surface
from llmserver.app.routes.responses import protocol as r
from llmserver.app.routes.responses.serving import answer, to_domain
from llmserver.app.routes.responses.streaming import response_events

RESPONSES: Surface[r.ResponsesRequest] = Surface(
    r.RESPONSES_DECODER, to_domain, answer, response_events, JsonReply.error
)
