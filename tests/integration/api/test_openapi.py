"""The served OpenAPI document describes the completion bodies the server really accepts."""

from __future__ import annotations

from typing import Any

import httpx


def test_completion_routes_document_their_request_bodies(live_server: Any) -> None:
    document = httpx.get(live_server.base_url + "/openapi/openapi.json").json()
    schemas = document["components"]["schemas"]
    for path, name in (
        ("/v1/chat/completions", "OpenAIChatCompletionRequest"),
        ("/v1/completions", "OpenAICompletionRequest"),
    ):
        operation = document["paths"][path]["post"]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{name}"
        assert "model" in schemas[name]["required"]
        assert set(operation["responses"]["200"]["content"]) == {
            "application/json",
            "text/event-stream",
        }
    chat = schemas["OpenAIChatCompletionRequest"]["properties"]
    assert {"messages", "max_tokens", "temperature", "top_p", "stop", "seed", "stream"} <= set(chat)
