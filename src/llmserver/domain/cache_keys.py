"""Response-cache keys and the policy of which requests may be cached.

The key hashes a canonical JSON array of everything that determines the answer: model id
and revision, the prompt exactly as sent, and every generation parameter *after* the
model's defaults are applied; and whose answer it is: the API key's id, so that no key can
learn from a hit what another key asked, or ``null`` where answers are shared by every key
(``CachePolicy.shared_across_keys``). So sending ``temperature: 0`` and leaving out a parameter
whose default is 0 give the same key, dictionary order never matters, and any change to
content, model, revision or parameter gives another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring as _quote

from llmserver.domain.embeddings import EmbeddingInput
from llmserver.domain.inference import ChatMessage, GenerationParams, Prompt
from llmserver.domain.output_constraint import OutputConstraint
from llmserver.domain.tools import Tools

CACHE_KEY_VERSION = 3
"""3: the owner (key id, or null for shared answers) follows the version. 2: the canonical
form became a JSON array in a fixed order (1 was an object with sorted keys). Entries cached
under an earlier version are simply never found again, so no answer cached for every key
before 3 is handed to a key that is now entitled only to its own."""


@dataclass(frozen=True, slots=True)
class CachePolicy:
    enabled: bool = True
    ttl_seconds: int = 24 * 3600
    cache_sampled_with_seed: bool = True
    """Cache temperature>0 requests when they carry an explicit seed."""
    shared_across_keys: bool = False
    """One answer for every key (a higher hit rate) rather than each key its own: then any
    key can learn, from a hit, whether another key sent the same prompt before."""


def canonical_json(
    *, owner: str | None, model_id: str, revision: str, prompt: Prompt, params: GenerationParams
) -> str:
    """Everything that determines the answer as a JSON array in a fixed order: version,
    owner, model, revision, max_tokens, temperature, top_p, stop, seed, then the messages as
    ``[role, content]`` pairs (a message with tool calls or a ``tool_call_id`` as a longer
    array, ``_tool_message``) or the text prompt; then, each only when something from there
    on is set, ``top_k`` (or null), the tools (or null), the output constraint as
    ``[kind, name, strict, schema]`` (or null), ``n`` and last ``logprobs``. So every other
    request keeps the key it had before ``top_k``, tools, constraints, ``n`` and
    ``logprobs`` existed: the array's length tells the forms apart, and an answer cached
    without log probabilities, or with one choice, is never a hit for a request that wants
    them.

    Exactly what ``json.dumps(..., separators=(",", ":"), ensure_ascii=False)`` writes for
    that list, written out here: setting up the encoder on every call cost more than the
    rest of the key. The strings go through the encoder's own (C) quoting function.
    """
    if prompt.messages is not None:
        messages = ",".join(
            f"[{_quote(m.role)},{_quote(m.content)}]"
            if not m.tool_calls and m.tool_call_id is None
            else _tool_message(m)
            for m in prompt.messages
        )
        content = f"[{messages}]"
    else:
        assert prompt.text is not None
        content = _quote(prompt.text)
    # ``+ 0.0`` folds -0.0 into 0.0: equal parameters must give equal keys.
    temperature = float(params.temperature) + 0.0
    top_p = float(params.top_p) + 0.0
    seed = "null" if params.seed is None else int(params.seed)
    scope = "null" if owner is None else _quote(owner)
    return (
        f"[{CACHE_KEY_VERSION},{scope},{_quote(model_id)},{_quote(revision)},"
        f"{int(params.max_tokens)},{temperature!r},{top_p!r},"
        f"[{','.join(map(_quote, params.stop))}],{seed},{content}" + _tail(params, prompt.tools)
    )


def _tail(params: GenerationParams, tools: Tools | None) -> str:
    constraint = params.constraint
    if params.n != 1 or params.logprobs is not None:
        tools_part = "null" if tools is None else _tools(tools)
        constraint_part = "null" if constraint is None else _constraint(constraint)
        logprobs = "" if params.logprobs is None else f",{int(params.logprobs)}"
        return f",{_int(params.top_k)},{tools_part},{constraint_part},{int(params.n)}{logprobs}]"
    if constraint is None:
        if tools is None:
            return "]" if params.top_k is None else f",{_int(params.top_k)}]"
        return f",{_int(params.top_k)},{_tools(tools)}]"
    tools_part = "null" if tools is None else _tools(tools)
    return f",{_int(params.top_k)},{tools_part},{_constraint(constraint)}]"


def _constraint(constraint: OutputConstraint) -> str:
    strict = "true" if constraint.strict else "false"
    return (
        f"[{_quote(constraint.kind.value)},{_optional(constraint.name)},{strict},"
        f"{_optional(constraint.schema)}]"
    )


def _int(value: int | None) -> str:
    return "null" if value is None else str(int(value))


def _tool_message(message: ChatMessage) -> str:
    """A message with tool fields: ``[role, content, tool_call_id, [[id, name, arguments],
    ...]]``, longer than every plain message's pair."""
    calls = ",".join(
        f"[{_quote(c.id)},{_quote(c.name)},{_quote(c.arguments)}]" for c in message.tool_calls
    )
    call_id = "null" if message.tool_call_id is None else _quote(message.tool_call_id)
    return f"[{_quote(message.role)},{_quote(message.content)},{call_id},[{calls}]]"


def _tools(tools: Tools) -> str:
    """``[[[name, description, parameters, strict], ...], choice, function,
    parallel_calls]``; the parameters as the JSON text sent (its key order is what a
    template renders)."""
    functions = ",".join(
        f"[{_quote(f.name)},{_optional(f.description)},{_optional(f.parameters)},{_flag(f.strict)}]"
        for f in tools.functions
    )
    parallel = _flag(tools.parallel_calls)
    return f"[[{functions}],{_quote(tools.choice.value)},{_optional(tools.function)},{parallel}]"


def _flag(value: bool | None) -> str:
    return "null" if value is None else str(value).lower()


def _optional(value: str | None) -> str:
    return "null" if value is None else _quote(value)


def cache_key(
    *, owner: str | None, model_id: str, revision: str, prompt: Prompt, params: GenerationParams
) -> str:
    """``owner``: the id of the key the answer is for, or ``None`` for one shared by all."""
    encoded = canonical_json(
        owner=owner, model_id=model_id, revision=revision, prompt=prompt, params=params
    )
    return hashlib.sha256(encoded.encode()).hexdigest()


def is_cacheable(params: GenerationParams, policy: CachePolicy, *, opted_out: bool) -> bool:
    """Only answers that a repeat would reproduce are cached."""
    if not policy.enabled or opted_out:
        return False
    if params.temperature == 0:
        return True
    return policy.cache_sampled_with_seed and params.seed is not None


def embedding_cache_key(
    *,
    owner: str | None,
    model_id: str,
    revision: str,
    inputs: Sequence[EmbeddingInput],
    dimensions: int | None,
) -> str:
    """An embedding request's key: a JSON array that starts with a string where a
    completion's starts with its version number, so the two kinds never share a key.

    No ``encoding_format``: the cache keeps the vectors in one form whichever encoding the
    answer is sent in, so a base64 request and a float one share an entry.

    Token arrays and texts are told apart by their JSON type (``[1,2]`` against ``"12"``).
    """
    parts = ",".join(
        _quote(item) if isinstance(item, str) else f"[{','.join(map(str, item))}]"
        for item in inputs
    )
    scope = "null" if owner is None else _quote(owner)
    width = "null" if dimensions is None else int(dimensions)
    encoded = (
        f'["embeddings",{CACHE_KEY_VERSION},{scope},{_quote(model_id)},{_quote(revision)},'
        f"{width},[{parts}]]"
    )
    return hashlib.sha256(encoded.encode()).hexdigest()
