"""``POST /v1/embeddings``: OpenAI's embeddings protocol, translated to the gateway's
embedding use case (the completions' policy path: keys, model access, RPM, quota, cache,
request log, metrics).

A raw ASGI handler, as the completion routes are, reading its body with their bounded
reader and answering with their plain reply; Litestar routes it (it is not on the
completion lane) and maps its errors to OpenAI's shape (``app.errors``). ``app.openapi``
documents it from the Structs here.
"""

from __future__ import annotations

import base64
from typing import Annotated, Literal

import msgspec
from litestar import asgi
from litestar.exceptions import MethodNotAllowedException
from litestar.types import ASGIApp, Receive, Scope, Send

from llmserver.app import paths
from llmserver.app.auth import principal_of
from llmserver.app.errors import rate_header_pairs
from llmserver.app.lane.body import read_body
from llmserver.app.lane.record import access_record, wants_cache
from llmserver.app.lane.replies import JsonReply
from llmserver.app.routes.openai.protocol import ENCODER
from llmserver.app.routes.openai.serving import decode
from llmserver.app.services import Services, services_in
from llmserver.app.statuses import http_status
from llmserver.domain.embeddings import EmbeddingInput, EmbeddingRequest, EncodingFormat, floats
from llmserver.domain.errors import InvalidRequest, RequestLogBacklog
from llmserver.domain.gateway import EmbeddingOutcome
from llmserver.domain.logs import Origin

MAX_INPUTS = 2048
"""OpenAI's limit on inputs per request."""

Text = Annotated[str, msgspec.Meta(min_length=1)]
TokenId = Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
TokenArray = Annotated[list[TokenId], msgspec.Meta(min_length=1)]


class EmbeddingsRequest(msgspec.Struct, frozen=True, kw_only=True):
    model: Annotated[str, msgspec.Meta(min_length=1)]
    input: (
        Text
        | Annotated[
            list[Text | TokenId | TokenArray], msgspec.Meta(min_length=1, max_length=MAX_INPUTS)
        ]
    )
    """A text, a list of texts, one token array (a list of ids) or a list of token arrays."""
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, msgspec.Meta(ge=1)] | None = None
    user: str | None = None
    cache: bool | None = None
    """Extension: ``false`` bypasses the response cache (like ``Cache-Control: no-cache``)."""


class Embedding(msgspec.Struct, frozen=True):
    index: int
    embedding: list[float] | str
    """Floats, or with ``encoding_format: base64`` the little-endian float32 bytes."""
    object: Literal["embedding"] = "embedding"


class EmbeddingUsage(msgspec.Struct, frozen=True):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(msgspec.Struct, frozen=True):
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
    object: Literal["list"] = "list"


DECODER = msgspec.json.Decoder(EmbeddingsRequest)


def inputs_of(body: EmbeddingsRequest) -> tuple[EmbeddingInput, ...]:
    """The inputs as the use case takes them: a flat list of ids is one token array."""
    raw = body.input
    if isinstance(raw, str):
        return (raw,)
    ids: list[int] = []
    items: list[EmbeddingInput] = []
    for item in raw:
        if isinstance(item, int):
            ids.append(item)
        else:
            items.append(item if isinstance(item, str) else tuple(item))
    if ids and items:
        raise InvalidRequest(
            "'input' mixes token ids with texts or token arrays; send one text, a list of "
            "texts, one list of token ids, or a list of lists of token ids.",
            param="input",
        )
    return (tuple(ids),) if ids else tuple(items)


def to_domain(body: EmbeddingsRequest, *, use_cache: bool) -> EmbeddingRequest:
    return EmbeddingRequest(
        model=body.model,
        inputs=inputs_of(body),
        dimensions=body.dimensions,
        encoding=EncodingFormat(body.encoding_format),
        use_cache=use_cache and body.cache is not False,
    )


def answer(outcome: EmbeddingOutcome, encoding: EncodingFormat) -> EmbeddingList:
    vectors = outcome.embeddings.vectors
    if encoding is EncodingFormat.BASE64:
        data = [Embedding(i, base64.b64encode(v).decode("ascii")) for i, v in enumerate(vectors)]
    else:
        data = [Embedding(i, floats(v)) for i, v in enumerate(vectors)]
    tokens = outcome.embeddings.prompt_tokens
    return EmbeddingList(data, outcome.model.id, EmbeddingUsage(tokens, tokens))


async def embedding_reply(services: Services, scope: Scope, receive: Receive) -> ASGIApp:
    principal = await principal_of(services, scope)
    if services.log_queue_full():
        # Back-pressure, as on the completion routes (see ``lane.completion``).
        raise RequestLogBacklog("The request log is backed up; retry shortly.", retry_after=1.0)
    settings = services.settings
    raw = await read_body(scope, receive, settings.max_body_bytes, settings.body_read_timeout_s)
    body: EmbeddingsRequest = decode(DECODER, raw)
    record = access_record(scope)
    record.model = body.model
    request = to_domain(body, use_cache=wants_cache(scope))
    logged = raw.decode("utf-8", "replace") if settings.log_bodies else None
    origin = Origin(record.request_id, paths.EMBEDDINGS, http_status, logged)
    outcome = await services.gateway.embed(principal, request, origin)
    record.cache = outcome.cache_status.value
    record.prompt_tokens = outcome.embeddings.prompt_tokens
    record.completion_tokens = 0
    return JsonReply(
        ENCODER.encode(answer(outcome, request.encoding)),
        [
            (b"x-cache", outcome.cache_status.value.encode()),
            *rate_header_pairs(outcome.rate, outcome.token_rate),
        ],
    )


# copy_scope=False: the handler fills in the access record the middleware put in the scope.
@asgi(paths.EMBEDDINGS, copy_scope=False)
async def create_embeddings(scope: Scope, receive: Receive, send: Send) -> None:
    if scope.get("method") != "POST":
        raise MethodNotAllowedException(headers={"allow": "POST"})
    reply = await embedding_reply(services_in(scope), scope, receive)
    await reply(scope, receive, send)
