"""Response-cache keys and the policy of which requests may be cached.

The key hashes a canonical JSON form of everything that determines the answer: model id
and revision, the prompt exactly as sent, and every generation parameter *after* the
model's defaults are applied. So sending ``temperature: 0`` and leaving out a parameter
whose default is 0 give the same key, dictionary order never matters, and any change to
content, model, revision or parameter gives another.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from llmserver.domain.inference import GenerationParams, Prompt

CACHE_KEY_VERSION = 1

# Built once: ``json.dumps`` with any non-default option builds a new encoder per call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class CachePolicy:
    enabled: bool = True
    ttl_seconds: int = 24 * 3600
    cache_sampled_with_seed: bool = True
    """Cache temperature>0 requests when they carry an explicit seed."""


def canonical_request(
    *, model_id: str, revision: str, prompt: Prompt, params: GenerationParams
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": CACHE_KEY_VERSION,
        "model": model_id,
        "revision": revision,
        "params": {
            "max_tokens": params.max_tokens,
            # ``+ 0.0`` folds -0.0 into 0.0: equal parameters must give equal keys.
            "temperature": float(params.temperature) + 0.0,
            "top_p": float(params.top_p) + 0.0,
            "stop": list(params.stop),
            "seed": params.seed,
        },
    }
    if prompt.messages is not None:
        body["messages"] = [[m.role, m.content] for m in prompt.messages]
    else:
        body["prompt"] = prompt.text
    return body


def cache_key(*, model_id: str, revision: str, prompt: Prompt, params: GenerationParams) -> str:
    canonical = canonical_request(
        model_id=model_id, revision=revision, prompt=prompt, params=params
    )
    encoded = _CANONICAL.encode(canonical)
    return hashlib.sha256(encoded.encode()).hexdigest()


def is_cacheable(params: GenerationParams, policy: CachePolicy, *, opted_out: bool) -> bool:
    """Only answers that a repeat would reproduce are cached."""
    if not policy.enabled or opted_out:
        return False
    if params.temperature == 0:
        return True
    return policy.cache_sampled_with_seed and params.seed is not None
