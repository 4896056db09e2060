from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llmserver.adapters.sql import SqlDatabase

WORKER = Path(__file__).with_name("quota_worker.py")


@pytest.mark.slow
@pytest.mark.postgres
async def test_50_reservations_from_3_processes_never_exceed_the_quota(
    migrated_postgres_url: str,
) -> None:
    quota, tokens = 1_000, 30  # room for 33 of the 50
    key_id = "multi-process-key"
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                migrated_postgres_url,
                key_id,
                "2026-03",
                str(attempts),
                str(tokens),
                str(quota),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for attempts in (17, 17, 16)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        admitted = [int(worker.communicate(timeout=60)[0]) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()

    assert all(worker.returncode == 0 for worker in workers)
    assert sum(admitted) == quota // tokens
    db = SqlDatabase.from_url(migrated_postgres_url)
    try:
        record = await db.usage.get(key_id, "2026-03")
    finally:
        await db.dispose()
    assert record.reserved_tokens == sum(admitted) * tokens <= quota
