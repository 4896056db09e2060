"""Prompts to token ids for the local backends, without stalling the event loop.

Tokenizing a prompt (and rendering its chat template first) costs about a microsecond a
character: a 1 MB body held the event loop for most of a second, and every other request
of the process with it. So ``PromptEncoder``:

- refuses nothing itself but offers ``floor``, a lower bound on the count computed from
  the prompt's length alone (no token covers more characters than the vocabulary's
  longest), for the gateway to refuse a provably too long prompt without tokenizing it;
- tokenizes a large prompt on a thread of its own (``encode``), a small one inline, where
  the thread hop would cost more than the work;
- remembers the last prompts it encoded: the gateway counts a prompt's tokens and then the
  backend encodes the same prompt to run it.
"""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from llmserver.adapters.inference.local_tools import (
    check_tools,
    template_messages,
    template_tools,
)
from llmserver.adapters.inference.tool_parsing import template_format
from llmserver.domain.errors import InvalidRequest
from llmserver.domain.inference import Prompt, close_stream

T = TypeVar("T")

OFF_LOOP_CHARS = 16_384
"""Prompts at least this long are tokenized off the event loop (about 15 ms of work,
against some 100 us for the hop to a thread and back)."""

_FLOOR_ROLES = frozenset({"system", "user"})
"""Roles whose content every chat template renders verbatim. Others may be rewritten (some
templates drop the reasoning of earlier assistant turns), so the floor does not count them."""

_COMPOSING = frozenset({"NFC", "NFKC"})
"""Normalizers that may merge characters: at most 4 into one (the longest canonical
decomposition of any code point), so they divide the floor by 4."""
_KEEPING = frozenset({"NFD", "NFKD", "Lowercase", "Prepend"})
_KEEPING_PRE = frozenset({"ByteLevel", "Metaspace", "Digits", "UnicodeScripts"})


def encode_prompt(tokenizer: Any, prompt: Prompt, model_id: str) -> list[int]:
    """Token ids exactly as the model sees them (chat prompts through the chat template)."""
    if prompt.messages is None:
        return [int(i) for i in tokenizer.encode(prompt.text)]
    if not tokenizer.chat_template:
        raise InvalidRequest(
            f"model {model_id!r} has no chat template; use /v1/completions", param="model"
        )
    if prompt.tools is None and all(
        not m.tool_calls and m.tool_call_id is None for m in prompt.messages
    ):
        messages = [{"role": m.role, "content": m.content} for m in prompt.messages]
        ids = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        return [int(i) for i in ids]
    return _encode_with_tools(tokenizer, prompt, model_id)


def _encode_with_tools(tokenizer: Any, prompt: Prompt, model_id: str) -> list[int]:
    """A conversation with tools or calls, through the template's tool rendering; what the
    template refuses (Llama 3.1's takes one call per message) is a 400."""
    from jinja2 import TemplateError

    assert prompt.messages is not None
    tools = None
    try:
        if prompt.tools is not None:
            check_tools(template_format(tokenizer.chat_template), model_id)
            tools = template_tools(prompt.tools)
        ids = tokenizer.apply_chat_template(
            template_messages(prompt.messages),
            tools=tools,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
        )
    except TemplateError as exc:
        raise InvalidRequest(
            f"model {model_id!r}'s chat template refused the conversation: {exc}",
            param="messages",
        ) from None
    except RecursionError:
        # A schema or arguments nested about as deep as the body decoder allows exhausts
        # the template's JSON writer first.
        raise InvalidRequest(
            "The tools or tool calls are nested too deeply to render.", param="tools"
        ) from None
    return [int(i) for i in ids]


def prompt_chars(prompt: Prompt, roles: frozenset[str] | None = None) -> int:
    """The prompt's characters: of the messages whose role is in ``roles`` if given (their
    content only), else all of it, tools and calls included (what tokenizing costs)."""
    if prompt.messages is None:
        return len(prompt.text or "")
    if roles is not None:
        return sum(len(m.content) for m in prompt.messages if m.role in roles)
    chars = sum(
        len(m.content) + sum(len(c.arguments) for c in m.tool_calls) for m in prompt.messages
    )
    if prompt.tools is not None:
        chars += sum(
            len(f.parameters or "") + len(f.description or "") for f in prompt.tools.functions
        )
    return chars


def chars_per_token(tokenizer: Any) -> int | None:
    """The most prompt characters one token can stand for, or ``None`` when unknown.

    The vocabulary's longest entry (added tokens included) bounds what a token covers only
    if the tokenizer keeps every character: a normalizer or pre-tokenizer that strips
    (whitespace, accents, control characters) or a model that maps an unknown run of any
    length to one token breaks the bound, so only pipelines known to keep text qualify.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    pipeline = json.loads(backend.to_str())
    factor = _normalizer_factor(pipeline.get("normalizer"))
    model = pipeline.get("model") or {}
    lossless_model = model.get("type") == "BPE" and (
        model.get("byte_fallback") or not model.get("unk_token")
    )
    if factor is None or not lossless_model or not _keeps_text(pipeline.get("pre_tokenizer")):
        return None
    longest = max((len(token) for token in tokenizer.get_vocab()), default=0)
    return longest * factor if longest > 0 else None


def _normalizer_factor(node: dict[str, Any] | None) -> int | None:
    if node is None:
        return 1
    kind = node.get("type")
    if kind == "Sequence":
        factor = 1
        for part in node.get("normalizers", []):
            inner = _normalizer_factor(part)
            if inner is None:
                return None
            factor *= inner
        return factor
    if kind in _COMPOSING:
        return 4
    if kind in _KEEPING:
        return 1
    if kind == "Replace":
        pattern = (node.get("pattern") or {}).get("String")
        content = node.get("content") or ""
        return 1 if pattern and len(content) >= len(pattern) else None
    return None


def _keeps_text(node: dict[str, Any] | None) -> bool:
    if node is None:
        return True
    kind = node.get("type")
    if kind == "Sequence":
        return all(_keeps_text(part) for part in node.get("pretokenizers", []))
    if kind in ("Split", "Punctuation"):
        return str(node.get("behavior", "")).lower() != "removed"
    return kind in _KEEPING_PRE


class PromptEncoder:
    """``encode_prompt`` with a floor, a thread for large prompts and a memo.

    The memo is read and written only on the event loop's thread (a large prompt's ids are
    computed on the encoder's thread and stored when the loop resumes), so it needs no lock.
    It skips prompts longer than ``max_ids`` tokens (the context: they can never run), so a
    flood of huge prompts cannot make it hold gigabytes of ids. One thread per model: large
    prompts wait for each other rather than take every core from the model's own threads.
    A tokenizer is safe to call from two threads as long as no call changes its truncation
    or padding, and none here does.
    """

    def __init__(
        self, tokenizer: Any, model_id: str, *, max_ids: int | None = None, size: int = 64
    ) -> None:
        self._tokenizer = tokenizer
        self._model_id = model_id
        self._max_ids = max_ids
        self._size = size
        self._known: collections.OrderedDict[Prompt, tuple[int, ...]] = collections.OrderedDict()
        self._chars_per_token = chars_per_token(tokenizer)
        self._thread: ThreadPoolExecutor | None = None

    def floor(self, prompt: Prompt) -> int:
        """At least this many tokens, from the prompt's length alone (0 when unknown)."""
        per_token = self._chars_per_token
        if per_token is None:
            return 0
        return -(-prompt_chars(prompt, _FLOOR_ROLES) // per_token)

    def start(
        self, prompt: Prompt, start: Callable[[list[int]], AsyncIterator[T]]
    ) -> AsyncIterator[T]:
        """``start(ids)``, called now when the ids are at hand (remembered, or a small
        prompt), else on first iteration, once a large prompt is tokenized off the loop.

        For a backend's synchronous ``stream``. The gateway counts every prompt just
        before, so the ids are at hand unless the memo skipped or dropped them."""
        ids: Sequence[int] | None = self._recall(prompt)
        if ids is None and prompt_chars(prompt) < OFF_LOOP_CHARS:
            ids = self._remember(prompt, encode_prompt(self._tokenizer, prompt, self._model_id))
        if ids is not None:
            return start(list(ids))
        return self._start_later(prompt, start)

    async def encode(self, prompt: Prompt) -> list[int]:
        """The ids; a large prompt is tokenized on the encoder's thread."""
        return list(await self._ids(prompt))

    async def count(self, prompt: Prompt) -> int:
        """``len(await encode(prompt))`` without copying the ids."""
        return len(await self._ids(prompt))

    async def _start_later(
        self, prompt: Prompt, start: Callable[[list[int]], AsyncIterator[T]]
    ) -> AsyncIterator[T]:
        events = start(await self.encode(prompt))
        try:
            async for event in events:
                yield event
        finally:
            await close_stream(events)

    def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=False, cancel_futures=True)

    async def _ids(self, prompt: Prompt) -> Sequence[int]:
        ids = self._recall(prompt)
        if ids is not None:
            return ids
        if prompt_chars(prompt) < OFF_LOOP_CHARS:
            return self._remember(prompt, encode_prompt(self._tokenizer, prompt, self._model_id))
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"tokenize-{self._model_id}")
        computed = await asyncio.get_running_loop().run_in_executor(
            self._thread, encode_prompt, self._tokenizer, prompt, self._model_id
        )
        return self._remember(prompt, computed)

    def _recall(self, prompt: Prompt) -> tuple[int, ...] | None:
        ids = self._known.get(prompt)
        if ids is not None:
            self._known.move_to_end(prompt)
        return ids

    def _remember(self, prompt: Prompt, ids: list[int]) -> Sequence[int]:
        if self._max_ids is not None and len(ids) > self._max_ids:
            return ids
        known = self._known[prompt] = tuple(ids)
        if len(self._known) > self._size:
            self._known.popitem(last=False)
        return known
