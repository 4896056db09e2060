"""Response-cache keys and the policy of which requests may be cached.

The key hashes a canonical JSON array of everything that determines the answer: model id
and revision, the prompt exactly as sent, and every generation parameter *after* the
model's defaults are applied. So sending ``temperature: 0`` and leaving out a parameter
whose default is 0 give the same key, dictionary order never matters, and any change to
content, model, revision or parameter gives another.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from json.encoder import encode_basestring as _quote

from llmserver.domain.inference import GenerationParams, Prompt

CACHE_KEY_VERSION = 2
"""2: the canonical form became a JSON array in a fixed order (1 was an object with sorted
keys); entries cached under version 1 are simply never found again."""


@dataclass(frozen=True, slots=True)
class CachePolicy:
    enabled: bool = True
    ttl_seconds: int = 24 * 3600
    cache_sampled_with_seed: bool = True
    """Cache temperature>0 requests when they carry an explicit seed."""


def canonical_json(
    *, model_id: str, revision: str, prompt: Prompt, params: GenerationParams
) -> str:
    """Everything that determines the answer as a JSON array in a fixed order: version,
    model, revision, max_tokens, temperature, top_p, stop, seed, then the messages as
    ``[role, content]`` pairs or the text prompt.

    Exactly what ``json.dumps(..., separators=(",", ":"), ensure_ascii=False)`` writes for
    that list, written out here: setting up the encoder on every call cost more than the
    rest of the key. The strings go through the encoder's own (C) quoting function.
    """
    if prompt.messages is not None:
        messages = ",".join(f"[{_quote(m.role)},{_quote(m.content)}]" for m in prompt.messages)
        content = f"[{messages}]"
    else:
        assert prompt.text is not None
        content = _quote(prompt.text)
    # ``+ 0.0`` folds -0.0 into 0.0: equal parameters must give equal keys.
    temperature = float(params.temperature) + 0.0
    top_p = float(params.top_p) + 0.0
    seed = "null" if params.seed is None else int(params.seed)
    return (
        f"[{CACHE_KEY_VERSION},{_quote(model_id)},{_quote(revision)},{int(params.max_tokens)},"
        f"{temperature!r},{top_p!r},[{','.join(map(_quote, params.stop))}],{seed},{content}]"
    )


def cache_key(*, model_id: str, revision: str, prompt: Prompt, params: GenerationParams) -> str:
    encoded = canonical_json(model_id=model_id, revision=revision, prompt=prompt, params=params)
    return hashlib.sha256(encoded.encode()).hexdigest()


def is_cacheable(params: GenerationParams, policy: CachePolicy, *, opted_out: bool) -> bool:
    """Only answers that a repeat would reproduce are cached."""
    if not policy.enabled or opted_out:
        return False
    if params.temperature == 0:
        return True
    return policy.cache_sampled_with_seed and params.seed is not None
