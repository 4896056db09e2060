"""A message's content as the text the gateway takes, for every API surface: a string as it
is, or text parts joined; any other part is a 400 naming the content it came in."""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Protocol

from llmserver.domain.errors import InvalidRequest


class ContentPart(Protocol):
    @property
    def type(self) -> str: ...

    @property
    def text(self) -> str | None: ...


def joined_text(
    content: str | Sequence[ContentPart], text_types: Container[str], param: str, send: str
) -> str:
    """``content``'s text; ``text_types`` are the part types that carry text, ``send`` says
    what to send instead of another part."""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if part.type not in text_types or part.text is None:
            raise InvalidRequest(
                f"Content parts of type '{part.type}' are not supported; send {send}.",
                param=param,
            )
        texts.append(part.text)
    return "".join(texts)
