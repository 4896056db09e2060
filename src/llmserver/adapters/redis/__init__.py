"""Redis adapters: the shared RPM limiter (one Lua script) and the hot response cache."""

from llmserver.adapters.redis.cache import RedisHotCache
from llmserver.adapters.redis.failure import FailurePolicy, GuardedRateLimitStore
from llmserver.adapters.redis.ratelimit import RedisRateLimitStore

__all__ = ["FailurePolicy", "GuardedRateLimitStore", "RedisHotCache", "RedisRateLimitStore"]
