"""Stores that answer from process memory and write to the database behind the request.

Used when one server process owns its database (``LLMSERVER_DEPLOYMENT=single``, the
embedded default): then the process's own memory is the freshest copy of its quota
ledger and cache index, and a database round trip on every request buys nothing but
latency. Replicas (``replicas``) share their quota counters in Redis
(``adapters.redis.usage``), which writes behind through the same ``PendingUsage``.
"""

from llmserver.adapters.write_behind.cache import (
    HitRecordingHotCache,
    WriteBehindCompletionCache,
)
from llmserver.adapters.write_behind.flush import PeriodicFlush
from llmserver.adapters.write_behind.usage import WriteBehindUsageStore

__all__ = [
    "HitRecordingHotCache",
    "PeriodicFlush",
    "WriteBehindCompletionCache",
    "WriteBehindUsageStore",
]
