"""Thin handlers: authenticate, decode, hand to the gateway, encode."""

from __future__ import annotations

from typing import Any

from litestar import Request, Router, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import Stream
from litestar.types import ASGIApp, Receive, Scope, Send

from llmserver.app.auth import authenticate, raw_header
from llmserver.app.errors import documented_errors, rate_headers
from llmserver.app.routes.openai import protocol as p
from llmserver.app.routes.openai import serving
from llmserver.app.services import services_of
from llmserver.domain.errors import Overloaded
from llmserver.domain.gateway import Outcome, StreamSession
from llmserver.domain.registry import ModelSpec

COMPLETION_ERRORS = documented_errors(400, 401, 403, 404, 413, 429, 503, 504)


def _completion_responses(body: type) -> dict[int, ResponseSpec]:
    # The handlers return a bare ASGI reply (see JsonReply), so the 200 body is declared here.
    ok = ResponseSpec(
        data_container=body,
        description="The completion; with `stream: true`, server-sent events of chunks "
        "ending with `data: [DONE]`.",
    )
    return {200: ok, **COMPLETION_ERRORS}


MODEL_ERRORS = documented_errors(401, 403, 404)
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def _wants_cache(request: Request[Any, Any, Any]) -> bool:
    directives = (raw_header(request, b"cache-control") or "").lower()
    return "no-cache" not in directives and "no-store" not in directives


def _note(request: Request[Any, Any, Any], **values: Any) -> None:
    request.scope.setdefault("state", {}).update(values)


def _headers(cache_status: str, rate: Any) -> dict[str, str]:
    return {"x-cache": cache_status, **rate_headers(rate)}


class JsonReply:
    """A finished JSON answer as a plain ASGI app.

    Litestar's ``Response`` path (header containers, content negotiation, encoder lookup)
    cost more than the rest of a cache hit; this sends two messages.
    """

    __slots__ = ("_body", "_headers")

    def __init__(self, body: bytes, headers: dict[str, str]) -> None:
        self._body = body
        self._headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *((k.encode(), v.encode()) for k, v in headers.items()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self._headers})
        await send({"type": "http.response.body", "body": self._body, "more_body": False})


async def _run(request: Request[Any, Any, Any], *, chat: bool) -> ASGIApp:
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
        ).to_asgi_response(app=None, request=request)
    outcome: Outcome = await gateway.complete(principal, domain_request, request_id)
    _note(
        request,
        cache_status=outcome.cache_status.value,
        prompt_tokens=outcome.completion.prompt_tokens,
        completion_tokens=outcome.completion.completion_tokens,
    )
    payload = serving.chat_response(outcome) if chat else serving.text_response(outcome)
    return JsonReply(p.ENCODER.encode(payload), _headers(outcome.cache_status.value, outcome.rate))


@post(
    "/chat/completions",
    status_code=200,
    summary="Create a chat completion",
    responses=_completion_responses(p.ChatCompletion),
)
async def chat_completions(request: Request[Any, Any, Any]) -> ASGIApp:
    return await _run(request, chat=True)


@post(
    "/completions",
    status_code=200,
    summary="Create a text completion",
    responses=_completion_responses(p.TextCompletion),
)
async def completions(request: Request[Any, Any, Any]) -> ASGIApp:
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
