"""The OpenAI routes.

The two completion routes are raw ASGI handlers: the ``Request``-to-``Response`` machinery
of an HTTP handler (signature model, response negotiation, header containers) cost a fifth
of a cached completion's CPU in the gateway benchmark. Their POSTs reach them through
``CompletionLane``, in front of Litestar, which skips its router and exception middleware
(another ninth); every other request, and these routes when CORS is on, go through
Litestar, where they are registered too. ``app.openapi`` documents them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Litestar, Request, Router, asgi, get
from litestar.enums import ScopeType
from litestar.exceptions import MethodNotAllowedException
from litestar.response import Stream
from litestar.routes import ASGIRoute
from litestar.types import ASGIApp, Receive, Scope, Send

from llmserver.app.auth import authenticate, principal_of
from llmserver.app.body import BARE_CONTEXT, ClientDisconnected, read_body
from llmserver.app.errors import (
    documented_errors,
    exception_reply,
    rate_header_pairs,
    rate_headers,
)
from llmserver.app.logging import scope_header
from llmserver.app.routes.openai import protocol as p
from llmserver.app.routes.openai import serving
from llmserver.app.services import services_in, services_of
from llmserver.domain.errors import RequestLogBacklog
from llmserver.domain.gateway import Outcome, StreamSession
from llmserver.domain.registry import ModelSpec

MODEL_ERRORS = documented_errors(401, 403, 404)
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def _wants_cache(scope: Scope) -> bool:
    directives = (scope_header(scope, b"cache-control") or b"").lower()
    return b"no-cache" not in directives and b"no-store" not in directives


class DisconnectWatch:
    """Cancels the current task if the client disconnects while its answer is computed.

    After the body, the server's ``receive()`` returns only when the client goes away.
    Listening costs a task (started on every miss, it took 15% off the gateway benchmark's
    cache-miss throughput: 0.51-0.52x bare against 0.60-0.63x), so it starts only for an
    answer still not ready ``WAIT_S`` after the first turn of the event loop: a hot-cache
    hit never suspends that long and pays two calls; a miss answered quickly (every
    single-flight miss suspends at least one turn) pays a timer; a real generation, the
    task.
    """

    WAIT_S = 0.05
    """How late a disconnect may be noticed: nothing for a person, most of a short answer."""

    __slots__ = ("_gone", "_handle", "_receive", "_task", "_watcher")

    def __init__(self, receive: Receive) -> None:
        task = asyncio.current_task()
        assert task is not None  # made in a coroutine
        self._receive = receive
        self._task = task
        self._watcher: asyncio.Task[None] | None = None
        self._gone = False
        self._handle: asyncio.Handle = task.get_loop().call_soon(self._wait, context=BARE_CONTEXT)

    def _wait(self) -> None:
        self._handle = self._task.get_loop().call_later(
            self.WAIT_S, self._start, context=BARE_CONTEXT
        )

    def _start(self) -> None:
        self._watcher = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            self._gone = True
            self._task.cancel()

    def client_left(self) -> bool:
        """Whether a cancellation was this watch's, for a client that left. If so it is
        undone, so the request ends as a disconnected client (a 499 handled like any
        refusal) rather than as a task the server cancelled."""
        if self._gone:
            self._task.uncancel()
        return self._gone

    def close(self) -> None:
        self._handle.cancel()
        if self._watcher is not None:
            self._watcher.cancel()


class JsonReply:
    """A finished JSON answer as a plain ASGI app.

    Litestar's ``Response`` path (header containers, content negotiation, encoder lookup)
    cost more than the rest of a cache hit; this sends two messages, with the headers built
    as the raw pairs ASGI takes.
    """

    __slots__ = ("_body", "_headers")

    def __init__(self, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self._body = body
        self._headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(body)),
            *headers,
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self._headers})
        await send({"type": "http.response.body", "body": self._body, "more_body": False})


async def _run(scope: Scope, receive: Receive, *, chat: bool) -> ASGIApp:
    """A completion request from the raw scope: no Litestar ``Request`` on the way of a
    non-streaming answer."""
    services = services_in(scope)
    principal = await principal_of(scope)
    if services.log_queue_full():
        # Back-pressure instead of dropping request-log rows: refuse new work until the
        # batcher catches up (the database is slow or down).
        raise RequestLogBacklog("The request log is backed up; retry shortly.", retry_after=1.0)
    settings = services.settings
    raw = await read_body(scope, receive, settings.max_body_bytes, settings.body_read_timeout_s)
    body: p.ChatCompletionRequest | p.CompletionRequest = serving.decode(
        p.CHAT_DECODER if chat else p.COMPLETION_DECODER, raw
    )
    logged_body = raw.decode("utf-8", "replace") if services.settings.log_bodies else None
    use_cache = _wants_cache(scope)
    domain_request = (
        serving.chat_request(body, use_cache=use_cache, raw=logged_body)  # type: ignore[arg-type]
        if chat
        else serving.text_request(body, use_cache=use_cache, raw=logged_body)  # type: ignore[arg-type]
    )
    state = scope["state"]
    request_id: str = state["request_id"]
    state["model"] = body.model
    gateway = services.gateway
    if body.stream:
        session: StreamSession = await gateway.open_stream(principal, domain_request, request_id)
        state["cache_status"] = session.cache_status.value
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = serving.sse_events(session, chat=chat, include_usage=include_usage, state=state)
        return Stream(
            events,
            media_type="text/event-stream",
            headers={
                **SSE_HEADERS,
                "x-cache": session.cache_status.value,
                **rate_headers(session.rate),
            },
        ).to_asgi_response(app=None, request=Request(scope, receive))
    watch = DisconnectWatch(receive)
    try:
        outcome: Outcome = await gateway.complete(principal, domain_request, request_id)
    except asyncio.CancelledError:
        # The gateway has logged the 499 and closed the reservation.
        if not watch.client_left():
            raise
        raise ClientDisconnected from None
    finally:
        watch.close()
    state.update(
        cache_status=outcome.cache_status.value,
        prompt_tokens=outcome.completion.prompt_tokens,
        completion_tokens=outcome.completion.completion_tokens,
    )
    payload = serving.chat_response(outcome) if chat else serving.text_response(outcome)
    return JsonReply(
        p.ENCODER.encode(payload),
        [(b"x-cache", outcome.cache_status.value.encode()), *rate_header_pairs(outcome.rate)],
    )


async def _serve(scope: Scope, receive: Receive, send: Send, *, chat: bool) -> None:
    if scope.get("method") != "POST":
        raise MethodNotAllowedException(headers={"allow": "POST"})
    reply = await _run(scope, receive, chat=chat)
    await reply(scope, receive, send)


class CompletionLane:
    """POSTs to the completion routes go straight to their handler; the rest to ``app``.

    It answers as Litestar would: errors raised before the reply are rendered by the same
    exception handlers. It stands aside when CORS is configured (Litestar's middleware adds
    those headers) and under a ``root_path``, which Litestar's router resolves.
    """

    def __init__(self, app: Litestar, *, enabled: bool) -> None:
        self.app = app
        self._enabled = enabled
        chat_of = {chat_completions.fn: True, completions.fn: False}
        self._paths = {
            route.path: chat_of[route.route_handler.fn]
            for route in app.routes
            if isinstance(route, ASGIRoute) and route.route_handler.fn in chat_of
        }
        """Path -> ``chat``: read from Litestar's own routes, so exactly the paths it would
        route to the two handlers."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chat = (
            self._paths.get(scope["path"])
            if self._enabled
            and scope["type"] == ScopeType.HTTP
            and scope.get("method") == "POST"
            and not scope.get("root_path")
            else None
        )
        if chat is None:
            await self.app(scope, receive, send)
            return
        scope["litestar_app"] = self.app  # what ``services_in`` and ``Request.app`` read
        try:
            reply = await _run(scope, receive, chat=chat)
        except Exception as exc:
            reply = exception_reply(Request(scope, receive), exc)
        await reply(scope, receive, send)


# copy_scope=False: the handler records what the access line reports in scope["state"].
@asgi("/chat/completions", copy_scope=False)
async def chat_completions(scope: Scope, receive: Receive, send: Send) -> None:
    await _serve(scope, receive, send, chat=True)


@asgi("/completions", copy_scope=False)
async def completions(scope: Scope, receive: Receive, send: Send) -> None:
    await _serve(scope, receive, send, chat=False)


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
