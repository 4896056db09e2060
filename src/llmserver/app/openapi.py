"""The OpenAPI operations of the completion and embedding routes, which Litestar cannot
derive.

These routes are raw ASGI handlers (see ``routes.openai.routes``), so Litestar
documents nothing about them. The msgspec Structs they decode and encode are the source of
truth: their JSON Schema is added here with each operation's bodies, the SSE content type a
streamed 200 carries, and every error answer in OpenAI's shape. Clients, generators and
schemathesis then see exactly what the server accepts and answers. The two ways of sending
a key are described here too (``BearerToken``, which the admin routes name, and ``ApiKey``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Litestar
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    PathItem,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)

from llmserver.app import paths
from llmserver.app.errors import ERROR_MEANINGS, ErrorBody
from llmserver.app.routes.openai import embeddings
from llmserver.app.routes.openai import protocol as p
from llmserver.app.routes.ui import UI_PATH

_PREFIX = "OpenAI"
"""Component names get a prefix so they never collide with Litestar's own (``Model``...)."""

COMPLETION_ERRORS = (400, 401, 403, 404, 408, 413, 429, 503, 504)

SECURITY_SCHEMES = {
    "BearerToken": SecurityScheme(
        type="http",
        scheme="bearer",
        description="`Authorization: Bearer <key>` (scheme in any case); used when "
        "`X-API-Key` is sent as well. An `Authorization` header with another scheme "
        "(`Basic ...` from a proxy) is ignored; one with no scheme (a bare key) is a 401 "
        "unless `X-API-Key` is sent.",
    ),
    "ApiKey": SecurityScheme(
        type="apiKey",
        name="X-API-Key",
        security_scheme_in="header",
        description="The key alone, `X-API-Key: <key>`; read when `Authorization` carries "
        "no Bearer key.",
    ),
}


def swagger_ui() -> SwaggerRenderPlugin:
    """The ``/openapi`` page, with Swagger UI from the playground build (``frontend/dist``
    copies it from the ``swagger-ui-dist`` package) instead of Litestar's default, a public
    CDN: the docs render offline and behind firewalls, and the page loads nothing third-party.
    """
    assets = f"{UI_PATH}/swagger"
    return SwaggerRenderPlugin(
        js_url=f"{assets}/swagger-ui-bundle.js",
        css_url=f"{assets}/swagger-ui.css",
        standalone_preset_js_url=f"{assets}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/svg+xml' href='{UI_PATH}/favicon.svg'>",
    )


@dataclass(frozen=True, slots=True)
class _Route:
    path: str
    operation_id: str
    summary: str
    request: type[msgspec.Struct]
    response: type[msgspec.Struct]
    streams: bool = True


_ROUTES = (
    _Route(
        paths.CHAT_COMPLETIONS,
        "V1ChatCompletionsChatCompletions",
        "Create a chat completion",
        p.ChatCompletionRequest,
        p.ChatCompletion,
    ),
    _Route(
        paths.COMPLETIONS,
        "V1CompletionsCompletions",
        "Create a text completion",
        p.CompletionRequest,
        p.TextCompletion,
    ),
    _Route(
        paths.EMBEDDINGS,
        "V1EmbeddingsCreateEmbeddings",
        "Create embeddings",
        embeddings.EmbeddingsRequest,
        embeddings.EmbeddingList,
        streams=False,
    ),
)


def _ref(kind: type) -> Reference:
    return Reference(ref=f"#/components/schemas/{_PREFIX}{kind.__name__}")


def _json(kind: type) -> dict[str, OpenAPIMediaType]:
    return {"application/json": OpenAPIMediaType(schema=_ref(kind))}


def _operation(route: _Route) -> Operation:
    if route.streams:
        ok = OpenAPIResponse(
            description="The completion; with `stream: true`, server-sent events of chunks "
            "ending with `data: [DONE]`.",
            content={
                **_json(route.response),
                "text/event-stream": OpenAPIMediaType(
                    schema=Schema(description="SSE: `data: {chunk}` lines, then `data: [DONE]`")
                ),
            },
        )
    else:
        ok = OpenAPIResponse(
            description="The embeddings, in the inputs' order.", content=_json(route.response)
        )
    errors = {
        str(status): OpenAPIResponse(description=ERROR_MEANINGS[status], content=_json(ErrorBody))
        for status in COMPLETION_ERRORS
    }
    return Operation(
        tags=["OpenAI"],
        summary=route.summary,
        operation_id=route.operation_id,
        request_body=RequestBody(required=True, content=_json(route.request)),
        responses={"200": ok, **errors},
        security=[{name: []} for name in SECURITY_SCHEMES],
    )


def document_completion_routes(app: Litestar) -> None:
    document = app.openapi_schema
    types = tuple({t for r in _ROUTES for t in (r.request, r.response)} | {ErrorBody})
    _, components = msgspec.json.schema_components(
        sorted(types, key=lambda t: t.__name__),
        ref_template="#/components/schemas/" + _PREFIX + "{name}",
    )
    assert document.components is not None
    schemas: dict[str, Any] = dict(document.components.schemas or {})
    # Plain dicts render as they are; the document only needs them serialised.
    schemas.update({_PREFIX + name: schema for name, schema in components.items()})
    document.components.schemas = schemas
    document.components.security_schemes = dict(SECURITY_SCHEMES)
    paths = dict(document.paths or {})
    for route in _ROUTES:
        paths[route.path] = PathItem(post=_operation(route))
    document.paths = paths
