"""The Messages API's routes.

``/v1/messages`` is a completion route: its POSTs usually go through the completion lane
in front of Litestar, and the raw ASGI handler here serves them when Litestar routes them
(CORS on, a ``root_path``). ``/v1/messages/count_tokens`` is an ordinary handler. Every
error under ``/v1/messages`` leaves in Anthropic's shape (``anthropic_error``, which the app's
exception handler picks by path, so a refused method or an unknown sub-path is answered
alike); ``app.openapi`` documents both routes.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, asgi, post
from litestar.types import Receive, Scope, Send

from llmserver.app import paths
from llmserver.app.auth import authenticate
from llmserver.app.errors import noted_error
from llmserver.app.lane.completion import serve_completion
from llmserver.app.routes.anthropic import protocol as a
from llmserver.app.routes.anthropic.serving import error_body, prompt_of, status_of
from llmserver.app.routes.openai.serving import decode
from llmserver.app.services import services_of


# copy_scope=False: the handler fills in the access record the middleware put in the scope.
@asgi(paths.MESSAGES, copy_scope=False)
async def messages(scope: Scope, receive: Receive, send: Send) -> None:
    await serve_completion(paths.MESSAGES, scope, receive, send)


@post(paths.COUNT_TOKENS, status_code=200, include_in_schema=False)  # app.openapi documents it
async def count_tokens(request: Request[Any, Any, Any]) -> a.TokenCount:
    services = services_of(request)
    principal = await authenticate(request)
    body: a.CountTokensRequest = decode(a.COUNT_TOKENS_DECODER, await request.body())
    count = await services.gateway.count_tokens(principal, body.model, prompt_of(body))
    return a.TokenCount(count)


def anthropic_error(request: Request[Any, Any, Any], exc: Exception) -> Response[a.ErrorBody]:
    reply = noted_error(request, exc)
    return Response(error_body(reply), status_code=status_of(reply), headers=reply.headers)


def anthropic_router() -> Router:
    return Router(
        path="/",
        route_handlers=[messages, count_tokens],
        tags=["Anthropic"],
    )
