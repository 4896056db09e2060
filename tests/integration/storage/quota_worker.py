"""One of the processes of ``test_quota_processes``: reserves concurrently on cue.

Usage: python quota_worker.py URL KEY_ID PERIOD ATTEMPTS TOKENS QUOTA
Prints ``ready``, waits for a line on stdin, then prints how many reservations it got.
"""

from __future__ import annotations

import asyncio
import sys

from llmserver.adapters.sql import SqlDatabase


async def main(url: str, key_id: str, period: str, attempts: int, tokens: int, quota: int) -> None:
    db = SqlDatabase.from_url(url)
    try:
        await db.ping()  # connect before the start signal, so all processes start level
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        results = await asyncio.gather(
            *(db.usage.reserve(key_id, period, tokens, quota) for _ in range(attempts))
        )
        print(sum(r.admitted for r in results), flush=True)
    finally:
        await db.dispose()


if __name__ == "__main__":
    url, key_id, period, *numbers = sys.argv[1:]
    attempts, tokens, quota = map(int, numbers)
    asyncio.run(main(url, key_id, period, attempts, tokens, quota))
