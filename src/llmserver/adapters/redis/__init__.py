"""Redis adapters: the shared RPM, TPM and parallel limiters and quota counters (Lua
scripts) and the hot response cache."""

from llmserver.adapters.redis.cache import RedisHotCache
from llmserver.adapters.redis.guarded_limiter import FailurePolicy, GuardedRateLimitStore
from llmserver.adapters.redis.parallel import RedisParallelStore
from llmserver.adapters.redis.ratelimit import RedisRateLimitStore
from llmserver.adapters.redis.stores import RedisStores
from llmserver.adapters.redis.token_rate import RedisTokenRateStore
from llmserver.adapters.redis.usage import RedisUsageStore

__all__ = [
    "FailurePolicy",
    "GuardedRateLimitStore",
    "RedisHotCache",
    "RedisParallelStore",
    "RedisRateLimitStore",
    "RedisStores",
    "RedisTokenRateStore",
    "RedisUsageStore",
]
