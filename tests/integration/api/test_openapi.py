"""The served OpenAPI document describes the completion bodies the server really accepts."""

from __future__ import annotations

import re

import httpx

from livesupport import LiveServer


def test_completion_and_embedding_routes_document_their_bodies(live_server: LiveServer) -> None:
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
    embeddings = document["paths"]["/v1/embeddings"]["post"]
    ref = embeddings["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/OpenAIEmbeddingsRequest"
    assert set(embeddings["responses"]["200"]["content"]) == {"application/json"}
    assert set(schemas["OpenAIEmbeddingsRequest"]["required"]) == {"model", "input"}
    chat = schemas["OpenAIChatCompletionRequest"]["properties"]
    assert {"messages", "max_tokens", "temperature", "top_p", "stop", "seed", "stream"} <= set(chat)


def test_the_docs_page_loads_everything_from_this_server(live_server: LiveServer) -> None:
    page = httpx.get(live_server.base_url + "/openapi")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)""", page.text)
    assert len(urls) == 4, urls  # the Swagger UI script, its preset and styles, the icon
    for url in urls:
        assert re.match("/[^/]", url), url  # a path on this server, no host
        asset = httpx.get(live_server.base_url + url)
        # The assets come with the playground build: a 503 or the playground's index.html
        # (which /ui answers for any path it has no file for) means `make ui` has not run.
        assert asset.status_code == 200, f"{url}: run make ui"
        assert not asset.headers["content-type"].startswith("text/html"), f"{url}: run make ui"


def test_new_surfaces_document_their_bodies_and_error_shapes(live_server: LiveServer) -> None:
    document = httpx.get(live_server.base_url + "/openapi/openapi.json").json()
    schemas = document["components"]["schemas"]
    for path, request, answer, error, streams in (
        ("/v1/messages", "AnthropicMessagesRequest", "AnthropicMessage", "Anthropic", True),
        (
            "/v1/messages/count_tokens",
            "AnthropicCountTokensRequest",
            "AnthropicTokenCount",
            "Anthropic",
            False,
        ),
        (
            "/v1/responses",
            "OpenAIResponsesResponsesRequest",
            "OpenAIResponsesResponse",
            "OpenAI",
            True,
        ),
    ):
        operation = document["paths"][path]["post"]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{request}"
        ok = operation["responses"]["200"]["content"]
        assert ok["application/json"]["schema"]["$ref"] == f"#/components/schemas/{answer}"
        assert ("text/event-stream" in ok) is streams
        refused = operation["responses"]["401"]["content"]["application/json"]["schema"]
        assert refused["$ref"] == f"#/components/schemas/{error}ErrorBody"
        assert "model" in schemas[request]["required"]
    assert "max_tokens" in schemas["AnthropicMessagesRequest"]["required"]
    assert schemas["AnthropicErrorBody"]["required"] == ["error"]
