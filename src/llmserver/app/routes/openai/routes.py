"""Thin handlers: authenticate, decode, hand to the gateway, encode."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.response import Stream

from llmserver.app.auth import authenticate
from llmserver.app.errors import documented_errors, rate_headers
from llmserver.app.routes.openai import protocol as p
from llmserver.app.routes.openai import serving
from llmserver.app.services import services_of
from llmserver.domain.errors import Overloaded
from llmserver.domain.gateway import Outcome, StreamSession
from llmserver.domain.registry import ModelSpec

COMPLETION_ERRORS = documented_errors(400, 401, 403, 404, 413, 429, 503, 504)
MODEL_ERRORS = documented_errors(401, 403, 404)
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def _wants_cache(request: Request[Any, Any, Any]) -> bool:
    directives = request.headers.get("cache-control", "").lower()
    return "no-cache" not in directives and "no-store" not in directives


def _note(request: Request[Any, Any, Any], **values: Any) -> None:
    request.scope.setdefault("state", {}).update(values)


def _headers(cache_status: str, rate: Any) -> dict[str, str]:
    return {"x-cache": cache_status, **rate_headers(rate)}


async def _run(request: Request[Any, Any, Any], *, chat: bool) -> Response[Any] | Stream:
    services = services_of(request)
    principal = await authenticate(request)
    if services.log_queue_full():
        # Back-pressure instead of dropping request-log rows: refuse new work until the
        # batcher catches up (the database is slow or down).
        raise Overloaded("The request log is backed up; retry shortly.", retry_after=1.0)
    raw = await request.body()
    body: p.ChatCompletionRequest | p.CompletionRequest = serving.decode(
        p.CHAT_DECODER if chat else p.COMPLETION_DECODER, raw
    )
    logged_body = raw.decode("utf-8", "replace") if services.settings.log_bodies else None
    use_cache = _wants_cache(request)
    domain_request = (
        serving.chat_request(body, use_cache=use_cache, raw=logged_body)  # type: ignore[arg-type]
        if chat
        else serving.text_request(body, use_cache=use_cache, raw=logged_body)  # type: ignore[arg-type]
    )
    request_id: str = request.scope["state"]["request_id"]
    _note(request, model=body.model)
    gateway = services.gateway
    if body.stream:
        session: StreamSession = await gateway.open_stream(principal, domain_request, request_id)
        _note(request, cache_status=session.cache_status.value)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = serving.sse_events(
            session, chat=chat, include_usage=include_usage, state=request.scope["state"]
        )
        return Stream(
            events,
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **_headers(session.cache_status.value, session.rate)},
        )
    outcome: Outcome = await gateway.complete(principal, domain_request, request_id)
    _note(
        request,
        cache_status=outcome.cache_status.value,
        prompt_tokens=outcome.completion.prompt_tokens,
        completion_tokens=outcome.completion.completion_tokens,
    )
    payload = serving.chat_response(outcome) if chat else serving.text_response(outcome)
    return Response(payload, headers=_headers(outcome.cache_status.value, outcome.rate))


@post(
    "/chat/completions",
    status_code=200,
    summary="Create a chat completion",
    responses=COMPLETION_ERRORS,
)
async def chat_completions(request: Request[Any, Any, Any]) -> Response[Any] | Stream:
    return await _run(request, chat=True)


@post(
    "/completions",
    status_code=200,
    summary="Create a text completion",
    responses=COMPLETION_ERRORS,
)
async def completions(request: Request[Any, Any, Any]) -> Response[Any] | Stream:
    return await _run(request, chat=False)


def _model(spec: ModelSpec, created: int) -> p.Model:
    return p.Model(id=spec.id, created=created, owned_by=spec.owned_by)


@get("/models", summary="List the models this key may use", responses=MODEL_ERRORS)
async def list_models(request: Request[Any, Any, Any]) -> p.ModelList:
    services = services_of(request)
    principal = await authenticate(request)
    created = services.started_at
    return p.ModelList([_model(s, created) for s in services.gateway.visible_models(principal)])


@get("/models/{model_id:path}", summary="Show one model", responses=MODEL_ERRORS)
async def show_model(request: Request[Any, Any, Any], model_id: str) -> p.Model:
    services = services_of(request)
    principal = await authenticate(request)
    spec = services.gateway.model_for(principal, model_id.lstrip("/"))
    return _model(spec, services.started_at)


def openai_router() -> Router:
    return Router(
        path="/v1",
        route_handlers=[chat_completions, completions, list_models, show_model],
        tags=["OpenAI"],
    )
