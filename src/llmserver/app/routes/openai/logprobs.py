"""Log probabilities in OpenAI's two shapes: chat's list of token entries, and a text
completion's parallel lists (``tokens``, ``token_logprobs``, ``top_logprobs``,
``text_offset``).

A token's ``bytes`` are its text's UTF-8 unless the backend knew better (an upstream that
sent them for a token that is part of a character)."""

from __future__ import annotations

from llmserver.app.routes.openai import protocol as p
from llmserver.domain.inference import Logprobs, TokenLogprob, TopLogprob


def _bytes(entry: TokenLogprob | TopLogprob) -> list[int]:
    return list(entry.bytes if entry.bytes is not None else entry.token.encode())


def chat_logprobs(entries: Logprobs | None) -> p.ChatLogprobs | None:
    if entries is None:
        return None
    return p.ChatLogprobs(
        content=[
            p.TokenLogprob(
                e.token,
                e.logprob,
                _bytes(e),
                [p.TopLogprob(t.token, t.logprob, _bytes(t)) for t in e.top],
            )
            for e in entries
        ]
    )


class TextOffsets:
    """Where each choice's next token starts in its text, across a stream's chunks."""

    def __init__(self) -> None:
        self._next: dict[int, int] = {}

    def logprobs(self, entries: Logprobs | None, index: int = 0) -> p.TextLogprobs | None:
        """``entries`` (the next tokens of choice ``index``) in a text completion's shape.
        ``top_logprobs`` holds the sampled token too, as OpenAI's does ("up to logprobs+1
        elements")."""
        if entries is None:
            return None
        offset = self._next.get(index, 0)
        offsets = []
        for entry in entries:
            offsets.append(offset)
            offset += len(entry.token)
        self._next[index] = offset
        return p.TextLogprobs(
            tokens=[e.token for e in entries],
            token_logprobs=[e.logprob for e in entries],
            top_logprobs=[
                {t.token: t.logprob for t in e.top} | {e.token: e.logprob} for e in entries
            ],
            text_offset=offsets,
        )
