"""Redis adapters: the shared RPM limiter (one Lua script) and the hot response cache."""

from llmserver.adapters.redis.cache import RedisHotCache
from llmserver.adapters.redis.guarded_limiter import FailurePolicy, GuardedRateLimitStore
from llmserver.adapters.redis.ratelimit import RedisRateLimitStore
from llmserver.adapters.redis.stores import RedisStores

__all__ = [
    "FailurePolicy",
    "GuardedRateLimitStore",
    "RedisHotCache",
    "RedisRateLimitStore",
    "RedisStores",
]
