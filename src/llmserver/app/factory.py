"""The Litestar app: routes, middleware, exception handlers and the completion lane.

``create_app(settings)`` builds the app; its lifespan wires the server with
``composition.build_services`` and runs it with ``lifecycle.running`` (start in order,
stop in reverse on shutdown).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from litestar import Litestar, Request, Response, get
from litestar.config.cors import CORSConfig
from litestar.openapi import OpenAPIConfig

from llmserver import __version__
from llmserver.app import paths
from llmserver.app.access_log import AccessLogMiddleware, access_logger
from llmserver.app.auth import authenticate_admin
from llmserver.app.composition import Overrides, build_services, build_tracer
from llmserver.app.errors import handle_exception
from llmserver.app.lane.completion import CompletionLane
from llmserver.app.lifecycle import running
from llmserver.app.log_setup import configure_logging
from llmserver.app.metrics import Metrics
from llmserver.app.openapi import document_completion_routes, swagger_ui
from llmserver.app.routes.admin import admin_router
from llmserver.app.routes.anthropic.routes import anthropic_error, anthropic_router
from llmserver.app.routes.health import healthz, readyz
from llmserver.app.routes.openai.routes import openai_router
from llmserver.app.routes.responses.routes import responses_router
from llmserver.app.routes.ui import ui_router
from llmserver.app.services import STATE_KEY, Services, services_of
from llmserver.app.settings import Settings, load_settings
from llmserver.app.tracing_middleware import TracingMiddleware
from llmserver.domain.tracing import Tracer

if TYPE_CHECKING:
    from litestar.types import ASGIApp


@get(paths.METRICS, include_in_schema=False)
async def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    services = services_of(request)
    if services.settings.metrics_require_key:
        await authenticate_admin(request)
    assert services.metrics is not None
    body, content_type = services.metrics.render()
    # As a header, not media_type: Litestar appends "; charset=utf-8" to every text/* media
    # type, and prometheus-client's already ends with it.
    return Response(body, headers={"content-type": content_type})


def _exception_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Every error's answer, in the shape of the API its path belongs to.

    By path, not by router: Litestar refuses an unknown sub-path or another method before
    any router is chosen, and a Messages API client must still get Anthropic's shape.
    """
    path = request.scope["path"].removeprefix(request.scope.get("root_path", ""))
    if path == paths.MESSAGES or path.startswith(paths.MESSAGES + "/"):
        return anthropic_error(request, exc)
    return handle_exception(request, exc)


def create_app(
    settings: Settings, overrides: Overrides | None = None, tracer: Tracer | None = None
) -> Litestar:
    """``tracer``: the one ``asgi_app`` built, which the server's parts report to and
    close at shutdown (``None``: tracing off)."""
    configure_logging(settings.log_format, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        composed = build_services(settings, overrides, tracer)
        async with running(composed, lambda services: app.state.update({STATE_KEY: services})):
            yield

    cors = (
        CORSConfig(
            allow_origins=list(settings.cors_origins),
            allow_headers=["authorization", "x-api-key", "content-type", "x-request-id"],
            expose_headers=[
                "x-request-id",
                "x-cache",
                "retry-after",
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ],
        )
        if settings.cors_origins
        else None
    )
    app = Litestar(
        route_handlers=[
            healthz,
            readyz,
            metrics_endpoint,
            openai_router(),
            responses_router(),
            anthropic_router(),
            admin_router(),
            ui_router(Path(settings.ui_dist_dir), settings.ui_key),
        ],
        lifespan=[lifespan],
        exception_handlers={Exception: _exception_handler},
        cors_config=cors,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="LLM Server",
            version=__version__,
            path=paths.OPENAPI,
            render_plugins=[swagger_ui()],
        ),
        logging_config=None,
    )
    document_completion_routes(app)
    return app


def asgi_app(settings: Settings, overrides: Overrides | None = None) -> Any:
    """The Litestar app wrapped in the access-log / request-id middleware.

    The wrapper sits outside Litestar so that every request gets an id and an access line,
    404s and body-size refusals included. With tracing on, the tracing middleware is the
    next layer in (it reads the request id); with it off, it is not there at all.
    """
    tracer = build_tracer(settings, overrides)
    app = create_app(settings, overrides, tracer)

    def metrics() -> Metrics | None:
        services: Services | None = app.state.get(STATE_KEY)
        return services.metrics if services is not None else None

    lane: ASGIApp = CompletionLane(app, enabled=not settings.cors_origins)
    if tracer is not None:
        lane = TracingMiddleware(lane, tracer)
    return AccessLogMiddleware(
        lane, metrics, access_logger(settings.log_format, settings.log_level)
    )


def app_from_environment() -> Any:
    """``asgi_app`` for settings read as ``llmserver serve`` reads them (environment,
    ``.env``, ``.env.local``): the factory each ``serve --workers N`` worker process calls,
    since uvicorn's worker processes import the app by name instead of receiving it."""
    return asgi_app(load_settings())
