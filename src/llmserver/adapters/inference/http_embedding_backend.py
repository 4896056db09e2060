"""The remote embedding backend: the upstream's own ``/v1/embeddings``, passed through.

The call goes through an ``HttpBackend`` for the same model, so connection reuse,
retries before the first byte, timeouts and error messages are the chat backend's. The
vectors are asked for in base64 (a quarter of the bytes of JSON floats, and exactly the
float32 values the upstream computed); an upstream that sends floats anyway is read too.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import msgspec

from llmserver.adapters.inference.http_backend import HttpBackend
from llmserver.adapters.inference.http_upstream_answers import decode_upstream
from llmserver.domain.backend_ports import EmbeddingBackend
from llmserver.domain.embeddings import EmbeddingInput, Embeddings, float32_bytes
from llmserver.domain.errors import InvalidRequest, UpstreamError
from llmserver.domain.inference import BackendStatus
from llmserver.domain.registry import ModelSpec

SPECIAL_TOKENS_BOUND = 2
"""Tokens an encoder adds around each input at most (``[CLS]`` and ``[SEP]``)."""


class _Item(msgspec.Struct):
    embedding: list[float] | str
    index: int = 0


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None


class _Answer(msgspec.Struct):
    data: list[_Item]
    usage: _Usage | None = None


_ANSWER = msgspec.json.Decoder(_Answer)


class HttpEmbeddingBackend(EmbeddingBackend):
    def __init__(self, spec: ModelSpec, http: HttpBackend) -> None:
        """``http``: the chat backend for the same spec, whose connection it calls through."""
        self._spec = spec
        self._http = http
        self._upstream_model = spec.upstream_model or spec.id

    @property
    def model_id(self) -> str:
        return self._spec.id

    async def count_tokens(self, inputs: Sequence[EmbeddingInput]) -> list[int]:
        # No tokenizer here: a token covers at least one UTF-8 byte, so bytes (plus the
        # special tokens) bound a text's count; the upstream's usage settles the charge.
        return [
            (len(item.encode()) if isinstance(item, str) else len(item)) + SPECIAL_TOKENS_BOUND
            for item in inputs
        ]

    async def embed(self, inputs: Sequence[EmbeddingInput], dimensions: int | None) -> Embeddings:
        body: dict[str, object] = {
            "model": self._upstream_model,
            "input": [item if isinstance(item, str) else list(item) for item in inputs],
            "encoding_format": "base64",
        }
        if dimensions is not None:
            if not self._spec.matryoshka:
                raise InvalidRequest(
                    f"Model {self._spec.id!r} does not support the 'dimensions' parameter.",
                    param="dimensions",
                )
            body["dimensions"] = dimensions
        raw = await self._http.post_json("/embeddings", body)
        answer = decode_upstream(_ANSWER, raw, self._spec.id, "embedding list")
        items = sorted(answer.data, key=lambda item: item.index)
        if [item.index for item in items] != list(range(len(inputs))):
            raise UpstreamError(
                f"the upstream of model {self._spec.id!r} answered {len(items)} embeddings "
                f"for {len(inputs)} inputs"
            )
        vectors = [self._vector(item.embedding) for item in items]
        counted = answer.usage.prompt_tokens if answer.usage is not None else None
        if counted is None:
            counted = sum(await self.count_tokens(inputs))
        return Embeddings(vectors, counted)

    def _vector(self, embedding: list[float] | str) -> bytes:
        if isinstance(embedding, list):
            return float32_bytes(embedding)
        try:
            return base64.b64decode(embedding, validate=True)
        except ValueError as exc:
            raise UpstreamError(
                f"the upstream of model {self._spec.id!r} sent an embedding that is not "
                f"base64: {exc}"
            ) from exc

    def status(self) -> BackendStatus:
        status = self._http.status()
        return BackendStatus(
            model_id=status.model_id,
            ready=status.ready,
            details={**status.details, "kind": "embedding"},
        )

    async def close(self) -> None:
        await self._http.close()
