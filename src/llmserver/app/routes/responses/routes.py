"""The Responses API's route: a completion route (see ``app.routes.openai.routes``), its
POSTs usually taken by the completion lane, served here when Litestar routes them.
``app.openapi`` documents it."""

from __future__ import annotations

from litestar import Router, asgi
from litestar.types import Receive, Scope, Send

from llmserver.app import paths
from llmserver.app.lane.completion import serve_completion


# copy_scope=False: the handler fills in the access record the middleware put in the scope.
@asgi(paths.RESPONSES, copy_scope=False)
async def responses(scope: Scope, receive: Receive, send: Send) -> None:
    await serve_completion(paths.RESPONSES, scope, receive, send)


def responses_router() -> Router:
    return Router(path="/", route_handlers=[responses], tags=["OpenAI"])
