"""Embedding values shared by the gateway and every embedding backend.

A vector travels as little-endian float32 bytes from the backend to the client: the form
the OpenAI ``base64`` encoding sends as it is, the form the response cache stores (as
base64 text), and four bytes a dimension where a list of Python floats takes 32.
"""

from __future__ import annotations

import base64
import sys
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from llmserver.domain.errors import InvalidRequest

EmbeddingInput = str | tuple[int, ...]
"""One text, or one text already tokenized (token ids of the model's own vocabulary)."""

_LITTLE = sys.byteorder == "little"


class EncodingFormat(StrEnum):
    FLOAT = "float"
    BASE64 = "base64"


@dataclass(slots=True)
class EmbeddingRequest:
    """What a client asked for; ``dimensions`` ``None`` means the model's own.

    Not frozen, as ``CompletionRequest``: one per request, never changed."""

    model: str
    inputs: tuple[EmbeddingInput, ...]
    dimensions: int | None = None
    encoding: EncodingFormat = EncodingFormat.FLOAT
    use_cache: bool = True


@dataclass(slots=True)
class Embeddings:
    """One vector per input, in the inputs' order, and what the inputs cost."""

    vectors: list[bytes]
    """Each one little-endian float32."""
    prompt_tokens: int


def float32_bytes(values: Sequence[float]) -> bytes:
    """``values`` as little-endian float32 (what backends without numpy produce)."""
    packed = array("f", values)
    if not _LITTLE:
        packed.byteswap()
    return packed.tobytes()


def floats(vector: bytes) -> list[float]:
    """A little-endian float32 vector as Python floats."""
    unpacked = array("f")
    unpacked.frombytes(vector)
    if not _LITTLE:
        unpacked.byteswap()
    return unpacked.tolist()


def check_dimensions(dimensions: int | None, native: int, *, supported: bool, model: str) -> None:
    """Refuse a ``dimensions`` the model cannot give (the 400 OpenAI answers too)."""
    if dimensions is None or dimensions == native:
        return
    if not supported:
        raise InvalidRequest(
            f"Model {model!r} does not support the 'dimensions' parameter; it always "
            f"returns {native} dimensions.",
            param="dimensions",
        )
    if not 1 <= dimensions <= native:
        raise InvalidRequest(
            f"'dimensions' must be from 1 to {native} for model {model!r}, not {dimensions}.",
            param="dimensions",
        )


def to_cache_text(vectors: Sequence[bytes]) -> str:
    """The vectors as the response cache stores them: base64 each, comma-separated (no
    comma in base64's alphabet, and no NUL, which PostgreSQL's text refuses)."""
    return ",".join(base64.b64encode(v).decode("ascii") for v in vectors)


def from_cache_text(text: str) -> list[bytes]:
    return [base64.b64decode(part) for part in text.split(",")]
