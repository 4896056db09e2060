"""Completing the OpenAPI document where the handlers' signatures cannot say it.

The completion handlers read the raw body and decode it themselves (so a 401 comes before
a body error, and body errors name the field), so Litestar sees no request body to document.
The msgspec request Structs are the source of truth: their JSON Schema is added here, along
with the SSE content type a streamed 200 carries. Clients, generators and schemathesis then
see exactly what the server accepts.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar
from litestar.openapi.spec import OpenAPIMediaType, Reference, RequestBody, Schema

from llmserver.app.routes.openai import protocol as p

_PREFIX = "OpenAI"
"""Component names get a prefix so they never collide with Litestar's own (``Model``...)."""

_BODIES: dict[str, type[msgspec.Struct]] = {
    "/v1/chat/completions": p.ChatCompletionRequest,
    "/v1/completions": p.CompletionRequest,
}


def document_request_bodies(app: Litestar) -> None:
    document = app.openapi_schema
    types = tuple(_BODIES.values())
    _, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/" + _PREFIX + "{name}"
    )
    assert document.components is not None
    schemas: dict[str, Any] = dict(document.components.schemas or {})
    # Plain dicts render as they are; the document only needs them serialised.
    schemas.update({_PREFIX + name: schema for name, schema in components.items()})
    document.components.schemas = schemas
    for path, body_type in _BODIES.items():
        item = document.paths[path] if document.paths else None
        if item is None or item.post is None:
            continue
        operation = item.post
        operation.request_body = RequestBody(
            required=True,
            content={
                "application/json": OpenAPIMediaType(
                    schema=Reference(ref=f"#/components/schemas/{_PREFIX}{body_type.__name__}")
                )
            },
        )
        ok = (operation.responses or {}).get("200")
        if ok is not None and not isinstance(ok, Reference) and ok.content is not None:
            ok.content["text/event-stream"] = OpenAPIMediaType(
                schema=Schema(description="SSE: `data: {chunk}` lines, then `data: [DONE]`")
            )
