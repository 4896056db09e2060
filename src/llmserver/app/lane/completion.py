"""A completion POST's answer, and the lane that takes those POSTs past Litestar (the
package docstring says why)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from litestar.enums import ScopeType
from litestar.exceptions import MethodNotAllowedException

from llmserver.app.auth import principal_of
from llmserver.app.errors import Where, error_reply, rate_header_pairs
from llmserver.app.lane.body import ClientDisconnected, read_body
from llmserver.app.lane.disconnect import DisconnectWatch
from llmserver.app.lane.record import access_record, wants_cache
from llmserver.app.lane.replies import JsonReply, SseReply
from llmserver.app.routes.openai.protocol import ENCODER
from llmserver.app.routes.openai.serving import decode
from llmserver.app.routes.surfaces import SURFACES
from llmserver.app.services import STATE_KEY, Services, services_in
from llmserver.app.statuses import http_status
from llmserver.domain.errors import RequestLogBacklog
from llmserver.domain.logs import Origin

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.types import ASGIApp, Receive, Scope, Send

    from llmserver.app.lane.record import AccessRecord
    from llmserver.app.lane.surface import AnySurface, CompletionBody
    from llmserver.domain.gateway import Outcome, StreamSession


async def _body(
    services: Services, surface: AnySurface, scope: Scope, receive: Receive
) -> tuple[CompletionBody, str | None]:
    """The decoded body, and its text when body logging is on."""
    settings = services.settings
    raw = await read_body(scope, receive, settings.max_body_bytes, settings.body_read_timeout_s)
    logged = raw.decode("utf-8", "replace") if settings.log_bodies else None
    return decode(surface.decoder, raw), logged


async def completion_reply(
    services: Services, route: str, scope: Scope, receive: Receive
) -> ASGIApp:
    """The answer to a POST on a completion route: no Litestar ``Request`` on its way."""
    principal = await principal_of(services, scope)
    if services.log_queue_full():
        # Back-pressure instead of dropping request-log rows: refuse new work until the
        # batcher catches up (the database is slow or down).
        raise RequestLogBacklog("The request log is backed up; retry shortly.", retry_after=1.0)
    surface = SURFACES[route]
    body, logged = await _body(services, surface, scope, receive)
    record = access_record(scope)
    record.model = body.model
    request = surface.to_domain(body, wants_cache(scope))
    origin = Origin(record.request_id, route, http_status, logged)
    gateway = services.gateway
    if body.stream:
        session = await gateway.open_stream(principal, request, origin)
        return _stream(session, surface, body, record)
    completing = gateway.complete(principal, request, origin)
    return await _answer(completing, surface, body, record, receive)


def _stream(
    session: StreamSession, surface: AnySurface, body: CompletionBody, record: AccessRecord
) -> ASGIApp:
    record.cache = session.cache_status.value
    return SseReply(
        surface.stream(session, body, record),
        [
            (b"x-cache", session.cache_status.encode()),
            *rate_header_pairs(session.rate, session.token_rate),
        ],
    )


async def _answer(
    completing: Coroutine[Any, Any, Outcome],
    surface: AnySurface,
    body: CompletionBody,
    record: AccessRecord,
    receive: Receive,
) -> ASGIApp:
    """``completing`` (the gateway's call, not yet started) run under a disconnect watch."""
    watch = DisconnectWatch(receive)
    try:
        outcome = await completing
    except asyncio.CancelledError:
        # The gateway has logged the 499 and closed the reservation.
        if not watch.client_left():
            raise
        raise ClientDisconnected from None
    finally:
        watch.close()
    record.cache = outcome.cache_status.value
    record.prompt_tokens = outcome.completion.prompt_tokens
    record.completion_tokens = outcome.completion.completion_tokens
    return JsonReply(
        ENCODER.encode(surface.answer(body, outcome)),
        [
            (b"x-cache", outcome.cache_status.encode()),
            *rate_header_pairs(outcome.rate, outcome.token_rate),
        ],
    )


class CompletionLane:
    """POSTs to the completion routes go straight to ``completion_reply``; the rest to
    ``app``.

    It answers as Litestar would: errors raised before the reply are rendered by the same
    mapping (``app.errors.error_reply``), in the route's surface's shape, as the handlers
    Litestar routes to render them (``serve_completion``). It stands aside when CORS is configured
    (Litestar's middleware adds those headers) and under a ``root_path``, which Litestar's
    router resolves.
    """

    def __init__(self, app: Litestar, *, enabled: bool) -> None:
        self.app = app
        self._enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = scope.get("path", "")  # a lifespan scope has none
        surface = SURFACES.get(route)
        if (
            surface is None
            or not self._enabled
            or scope["type"] != ScopeType.HTTP
            or scope.get("method") != "POST"
            or scope.get("root_path")
        ):
            await self.app(scope, receive, send)
            return
        try:
            reply = await completion_reply(self.app.state[STATE_KEY], route, scope, receive)
        except Exception as exc:
            reply = failure_reply(surface, exc, route, scope)
        await reply(scope, receive, send)


async def serve_completion(route: str, scope: Scope, receive: Receive, send: Send) -> None:
    """A completion route's handler when Litestar routes the request (see the class)."""
    try:
        if scope.get("method") != "POST":
            raise MethodNotAllowedException(headers={"allow": "POST"})
        reply = await completion_reply(services_in(scope), route, scope, receive)
    except Exception as exc:
        reply = failure_reply(SURFACES[route], exc, route, scope)
    await reply(scope, receive, send)


def failure_reply(surface: AnySurface, exc: Exception, route: str, scope: Scope) -> ASGIApp:
    """The answer to a completion route's request that raised ``exc``, in its surface's
    shape, its code noted for the access line."""
    record = access_record(scope)
    error = error_reply(exc, Where(str(scope.get("method", "POST")), route, record.request_id))
    record.error_code = error.body.error.code
    return surface.error(error)
