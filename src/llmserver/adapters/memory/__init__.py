"""In-process implementations of every storage port.

They are the embedded default (one process, no server needed) and the fakes of the
domain's unit tests, so they are production code and pass the same contract suites as the
SQL and Redis adapters.
"""

from llmserver.adapters.memory.audit import MemoryAuditLog
from llmserver.adapters.memory.cache import MemoryCompletionCache, MemoryHotCache
from llmserver.adapters.memory.keys import MemoryKeyStore
from llmserver.adapters.memory.logs import MemoryRequestLogStore
from llmserver.adapters.memory.parallel import MemoryParallelStore
from llmserver.adapters.memory.ratelimit import MemoryRateLimitStore
from llmserver.adapters.memory.teams import MemoryTeamStore
from llmserver.adapters.memory.token_rate import MemoryTokenRateStore
from llmserver.adapters.memory.usage import MemoryUsageStore

__all__ = [
    "MemoryAuditLog",
    "MemoryCompletionCache",
    "MemoryHotCache",
    "MemoryKeyStore",
    "MemoryParallelStore",
    "MemoryRateLimitStore",
    "MemoryRequestLogStore",
    "MemoryTeamStore",
    "MemoryTokenRateStore",
    "MemoryUsageStore",
]
