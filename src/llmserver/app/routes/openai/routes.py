"""The OpenAI routes.

The two completion routes are raw ASGI handlers whose answer ``app.lane.completion``
builds: their POSTs usually reach it through the completion lane, in front of Litestar; the
handlers registered here serve them when Litestar routes them (CORS on, a ``root_path``).
``app.openapi`` documents them.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Router, asgi, get
from litestar.types import Receive, Scope, Send

from llmserver.app import paths
from llmserver.app.auth import authenticate
from llmserver.app.errors import documented_errors
from llmserver.app.lane.completion import serve_completion
from llmserver.app.routes.openai import protocol as p
from llmserver.app.routes.openai.embeddings import create_embeddings
from llmserver.app.services import services_of
from llmserver.domain.registry import ModelSpec

MODEL_ERRORS = documented_errors(401, 403, 404)


# copy_scope=False: the handler fills in the access record the middleware put in the scope.
@asgi(paths.CHAT_COMPLETIONS, copy_scope=False)
async def chat_completions(scope: Scope, receive: Receive, send: Send) -> None:
    await serve_completion(paths.CHAT_COMPLETIONS, scope, receive, send)


@asgi(paths.COMPLETIONS, copy_scope=False)
async def completions(scope: Scope, receive: Receive, send: Send) -> None:
    await serve_completion(paths.COMPLETIONS, scope, receive, send)


def _model(spec: ModelSpec, created: int) -> p.Model:
    capabilities: list[p.Capability] = [*spec.capabilities]  # type: ignore[list-item]
    return p.Model(id=spec.id, created=created, owned_by=spec.owned_by, capabilities=capabilities)


@get(paths.MODELS, summary="List the models this key may use", responses=MODEL_ERRORS)
async def list_models(request: Request[Any, Any, Any]) -> p.ModelList:
    services = services_of(request)
    principal = await authenticate(request)
    created = services.started_at
    return p.ModelList([_model(s, created) for s in services.gateway.visible_models(principal)])


@get(paths.MODEL, summary="Show one model", responses=MODEL_ERRORS)
async def show_model(request: Request[Any, Any, Any], model_id: str) -> p.Model:
    services = services_of(request)
    principal = await authenticate(request)
    spec = services.gateway.model_for(principal, model_id.lstrip("/"))
    return _model(spec, services.started_at)


def openai_router() -> Router:
    return Router(
        path="/",
        route_handlers=[chat_completions, completions, create_embeddings, list_models, show_model],
        tags=["OpenAI"],
    )
