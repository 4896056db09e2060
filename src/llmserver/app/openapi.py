"""The OpenAPI operations of the completion and embedding routes, which Litestar cannot
derive.

The completion routes (OpenAI's chat and text completions and Responses, Anthropic's
Messages) and the embedding route are raw ASGI handlers (see ``routes.openai.routes``), so
Litestar documents nothing about them; Messages' ``count_tokens`` is documented here beside
them. The msgspec Structs they decode and encode are the source of truth: their JSON Schema
is added here with each operation's bodies, the SSE content type a streamed 200 carries,
and every error answer in its API's shape (Anthropic's on the Messages routes, OpenAI's
elsewhere). Clients, generators and schemathesis then see exactly what the server accepts
and answers. The two ways of sending a key are described here too (``BearerToken``, which
the admin routes name, and ``ApiKey``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Litestar
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import (
    OpenAPI,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    PathItem,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)

from llmserver.app import paths
from llmserver.app.errors import ERROR_MEANINGS, ErrorBody
from llmserver.app.routes.anthropic import protocol as a
from llmserver.app.routes.openai import embeddings
from llmserver.app.routes.openai import protocol as p
from llmserver.app.routes.responses import protocol as r
from llmserver.app.routes.ui import UI_PATH

_PREFIXES = {
    p.__name__: "OpenAI",
    embeddings.__name__: "OpenAI",
    ErrorBody.__module__: "OpenAI",
    r.__name__: "OpenAIResponses",
    a.__name__: "Anthropic",
}
"""Component names get their API's prefix: the APIs share struct names (``Usage``,
``Message``), and none may collide with Litestar's own (``Model``...)."""

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
    errors: tuple[int, ...] = COMPLETION_ERRORS
    error_body: type[msgspec.Struct] = ErrorBody
    """The error shape of the route's API: OpenAI's, or Anthropic's on its routes."""
    streams: str | None = "chunks ending with `data: [DONE]`"
    """What ``stream: true`` answers with; ``None`` for a route that does not stream."""
    tag: str = "OpenAI"
    answer: str = "The answer"


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
        streams=None,
        answer="The embeddings, in the inputs' order",
    ),
    _Route(
        paths.RESPONSES,
        "V1ResponsesResponses",
        "Create a model response (stateless: nothing is stored)",
        r.ResponsesRequest,
        r.Response,
        streams="`event: response.*` events, from `response.created` to `response.completed` "
        "(`response.incomplete`, `response.failed`)",
    ),
    _Route(
        paths.MESSAGES,
        "V1MessagesMessages",
        "Create a message (Anthropic Messages API)",
        a.MessagesRequest,
        a.Message,
        errors=(*COMPLETION_ERRORS, 529),
        error_body=a.ErrorBody,
        streams="Anthropic's events, from `message_start` to `message_stop`",
        tag="Anthropic",
    ),
    _Route(
        paths.COUNT_TOKENS,
        "V1MessagesCountTokens",
        "Count a message's input tokens (Anthropic Messages API)",
        a.CountTokensRequest,
        a.TokenCount,
        errors=(400, 401, 403, 404, 413, 503),
        error_body=a.ErrorBody,
        streams=None,
        tag="Anthropic",
    ),
)


def _ref(kind: type) -> Reference:
    return Reference(ref=f"#/components/schemas/{_PREFIXES[kind.__module__]}{kind.__name__}")


def _json(kind: type) -> dict[str, OpenAPIMediaType]:
    return {"application/json": OpenAPIMediaType(schema=_ref(kind))}


def _operation(route: _Route) -> Operation:
    content = _json(route.response)
    description = f"{route.answer}."
    if route.streams is not None:
        description = f"{route.answer}; with `stream: true`, server-sent events: {route.streams}."
        content["text/event-stream"] = OpenAPIMediaType(
            schema=Schema(description=f"SSE: {route.streams}")
        )
    errors = {
        str(status): OpenAPIResponse(
            description=ERROR_MEANINGS[status], content=_json(route.error_body)
        )
        for status in route.errors
    }
    return Operation(
        tags=[route.tag],
        summary=route.summary,
        operation_id=route.operation_id,
        request_body=RequestBody(required=True, content=_json(route.request)),
        responses={"200": OpenAPIResponse(description=description, content=content), **errors},
        security=[{name: []} for name in SECURITY_SCHEMES],
    )


def document_completion_routes(app: Litestar) -> None:
    document = app.openapi_schema
    assert document.components is not None
    schemas: dict[str, Any] = dict(document.components.schemas or {})
    types = {t for route in _ROUTES for t in (route.request, route.response, route.error_body)}
    for prefix in sorted(set(_PREFIXES.values())):
        _, components = msgspec.json.schema_components(
            sorted((t for t in types if _PREFIXES[t.__module__] == prefix), key=str),
            ref_template="#/components/schemas/" + prefix + "{name}",
        )
        # Plain dicts render as they are; the document only needs them serialised.
        schemas.update({prefix + name: schema for name, schema in components.items()})
    document.components.schemas = schemas
    document.components.security_schemes = dict(SECURITY_SCHEMES)
    paths = dict(document.paths or {})
    for route in _ROUTES:
        paths[route.path] = PathItem(post=_operation(route))
    document.paths = paths
    _document_usage_csv(document)


def _document_usage_csv(document: OpenAPI) -> None:
    """``GET /admin/usage`` also answers CSV (``format=csv`` or ``Accept: text/csv``);
    Litestar's response spec names one media type, so the CSV one is added here."""
    usage = (document.paths or {}).get("/admin/usage")
    if usage is None or usage.get is None or usage.get.responses is None:
        return
    ok = usage.get.responses.get("200")
    if isinstance(ok, OpenAPIResponse) and ok.content is not None:
        ok.content["text/csv"] = OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))
