"""Redis adapters: the shared RPM limiter and quota counters (Lua scripts) and the hot
response cache."""

from llmserver.adapters.redis.cache import RedisHotCache
from llmserver.adapters.redis.guarded_limiter import FailurePolicy, GuardedRateLimitStore
from llmserver.adapters.redis.ratelimit import RedisRateLimitStore
from llmserver.adapters.redis.stores import RedisStores
from llmserver.adapters.redis.usage import RedisUsageStore

__all__ = [
    "FailurePolicy",
    "GuardedRateLimitStore",
    "RedisHotCache",
    "RedisRateLimitStore",
    "RedisStores",
    "RedisUsageStore",
]
