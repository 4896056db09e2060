"""The spans a traced completion that misses the cache has under its request, in the order
the gateway starts them: what README's span table lists, shared by the unit test of the
traced gateway and the integration test of a live server's traces."""

from __future__ import annotations


def miss_steps(model: str) -> list[str]:
    """The request's children for a cache miss on ``model``; its inference is the last."""
    return [
        "llmserver.auth",
        "llmserver.rate_limit",
        "llmserver.cache.lookup",
        "llmserver.count_tokens",
        "llmserver.quota.reserve",
        "llmserver.cache.lookup",
        f"chat {model}",
    ]
