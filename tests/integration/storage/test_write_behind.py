"""The single-process stores against a real SQLite database: what they write behind
arrives exactly, survives a restart of the process, and survives a failing database."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from structlog.testing import capture_logs

from llmserver.adapters.memory import MemoryHotCache
from llmserver.adapters.sql import SqlDatabase, migrate
from llmserver.adapters.sql.cache import SqlCompletionCache
from llmserver.adapters.write_behind import (
    HitRecordingHotCache,
    PeriodicFlush,
    WriteBehindCompletionCache,
    WriteBehindUsageStore,
)
from llmserver.domain.inference import FinishReason
from llmserver.domain.ports import CachedCompletion
from llmserver.domain.quota import UsageRecord

P = "2026-11"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


async def _migrated(tmp_path: Path, *, writer_process: bool) -> AsyncIterator[SqlDatabase]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'wb.db'}"
    await migrate.upgrade(url)
    database = SqlDatabase.from_url(url, writer_process=writer_process)
    yield database
    await database.dispose()


@pytest.fixture(params=["inline", "writer-process"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlDatabase]:
    async for database in _migrated(tmp_path, writer_process=request.param == "writer-process"):
        yield database


@pytest.fixture
async def process_db(tmp_path: Path) -> AsyncIterator[SqlDatabase]:
    """The database with its writer process, for the tests that fault that process."""
    async for database in _migrated(tmp_path, writer_process=True):
        yield database


async def _rename(db: SqlDatabase, table: str, to: str) -> None:
    """A real fault: the table the flush writes to disappears, then comes back."""
    async with db.engine.begin() as conn:
        await conn.execute(text(f"ALTER TABLE {table} RENAME TO {to}"))


def _entry(key: str) -> CachedCompletion:
    return CachedCompletion(
        key=key,
        model="tiny",
        text="cached",
        prompt_tokens=3,
        completion_tokens=2,
        finish_reason=FinishReason.STOP,
        created_at=NOW,
        expires_at=NOW + timedelta(hours=1),
    )


async def test_settled_usage_reaches_the_database_and_a_restart_reads_it(
    db: SqlDatabase,
) -> None:
    await db.usage.settle("k", P, 0, 100)  # written by an earlier process
    ledger = WriteBehindUsageStore(db.usage)
    assert (await ledger.reserve("k", P, 50, 1_000)).admitted
    await ledger.settle("k", P, 50, 30, cache_hit=True)
    assert (await ledger.reserve("k", P, 20, 1_000)).admitted  # still in flight

    assert (await db.usage.get("k", P)).used_tokens == 100  # nothing written yet
    await ledger.flush()

    stored = await db.usage.get("k", P)
    assert (stored.used_tokens, stored.requests, stored.cache_hits) == (130, 2, 1)
    restarted = WriteBehindUsageStore(db.usage)
    # The in-flight reservation died with its process; the settled usage did not.
    assert await restarted.get("k", P) == UsageRecord("k", P, 130, 0, 2, 1)


async def test_a_failed_flush_keeps_the_usage_and_the_next_one_writes_it_once(
    db: SqlDatabase,
) -> None:
    ledger = WriteBehindUsageStore(db.usage)
    await ledger.settle("k", P, 0, 7)
    await _rename(db, "usage", "usage_away")
    with pytest.raises(Exception, match="usage"):
        await ledger.flush()
    await ledger.settle("k", P, 0, 5)  # arrives while the database is broken
    await _rename(db, "usage_away", "usage")

    await ledger.flush()
    await ledger.flush()  # nothing left: writes nothing twice

    assert await db.usage.get("k", P) == UsageRecord("k", P, used_tokens=12, requests=2)
    assert ledger.pending == 0


async def test_admission_is_decided_from_memory_across_many_concurrent_requests(
    db: SqlDatabase,
) -> None:
    await db.usage.settle("k", P, 0, 40)
    ledger = WriteBehindUsageStore(db.usage)

    results = await asyncio.gather(*(ledger.reserve("k", P, 6, 100) for _ in range(30)))

    assert sum(r.admitted for r in results) == 10  # (100 - 40) // 6


async def test_periodic_flush_writes_in_the_background_and_on_close(db: SqlDatabase) -> None:
    ledger = WriteBehindUsageStore(db.usage)
    flusher = PeriodicFlush("usage", ledger.flush, interval_s=0.05)
    flusher.start()
    await ledger.settle("a", P, 0, 3)
    for _ in range(500):  # a writer process is started on the first write
        if (await db.usage.get("a", P)).used_tokens == 3:
            break
        await asyncio.sleep(0.02)
    assert (await db.usage.get("a", P)).used_tokens == 3

    await ledger.settle("b", P, 0, 4)
    assert await flusher.close()
    assert (await db.usage.get("b", P)).used_tokens == 4


async def test_cache_entries_and_hits_are_written_behind_and_indexed_after_restart(
    db: SqlDatabase,
) -> None:
    cache = WriteBehindCompletionCache(db.cache, index=True)
    await cache.put(_entry("a"))
    got = await cache.get("a", NOW)  # answered before any write
    assert got is not None
    assert got.hit_count == 1
    assert await db.cache.peek("a", NOW) is None
    await cache.flush()

    stored = await db.cache.peek("a", NOW)
    assert stored is not None
    assert (stored.text, stored.hit_count) == ("cached", 1)
    restarted = WriteBehindCompletionCache(db.cache, index=True)
    assert await restarted.load_index(NOW) == 1
    again = await restarted.get("a", NOW)
    assert again is not None
    assert again.hit_count == 2


async def test_an_indexed_miss_never_reads_the_database(db: SqlDatabase) -> None:
    cache = WriteBehindCompletionCache(db.cache, index=True)
    await cache.load_index(NOW)
    await _rename(db, "completion_cache", "cache_away")  # any read would now fail

    assert await cache.get("never-stored", NOW) is None

    unindexed = WriteBehindCompletionCache(db.cache, index=False)
    with pytest.raises(Exception, match="completion_cache"):
        await unindexed.get("never-stored", NOW)


class _CountedReads:
    """The real durable cache, counting its reads."""

    def __init__(self, durable: SqlCompletionCache) -> None:
        self.durable = durable
        self.reads = 0

    def __getattr__(self, name: str) -> Any:  # whatever the durable cache answers
        return getattr(self.durable, name)

    async def peek(self, key: str, now: datetime) -> CachedCompletion | None:
        self.reads += 1
        await asyncio.sleep(0.05)  # a slow database: every request arrives meanwhile
        return await self.durable.peek(key, now)


async def test_identical_requests_arriving_together_share_one_database_read(
    db: SqlDatabase,
) -> None:
    await db.cache.put(_entry("popular"))
    durable = _CountedReads(db.cache)
    cache = WriteBehindCompletionCache(durable, index=True)
    await cache.load_index(NOW)

    readers = [asyncio.ensure_future(cache.get("popular", NOW)) for _ in range(32)]
    await asyncio.sleep(0.01)
    readers[0].cancel()  # one client leaves: the others still get the answer
    answers = await asyncio.gather(*readers[1:])

    assert durable.reads == 1
    assert all(a is not None and a.text == "cached" for a in answers)
    await cache.flush()
    stored = await db.cache.peek("popular", NOW)
    assert stored is not None
    assert stored.hit_count == 31
    assert await cache.get("popular", NOW) is not None
    assert durable.reads == 2  # a later request reads again: nothing stale is kept


async def test_a_failed_cache_flush_keeps_answering_and_retries(db: SqlDatabase) -> None:
    cache = WriteBehindCompletionCache(db.cache, index=True)
    await cache.put(_entry("a"))
    await _rename(db, "completion_cache", "cache_away")
    with pytest.raises(Exception, match="completion_cache"):
        await cache.flush()
    assert await cache.get("a", NOW) is not None
    await _rename(db, "cache_away", "completion_cache")

    await cache.flush()

    stored = await db.cache.peek("a", NOW)
    assert stored is not None
    assert stored.hit_count == 1


async def test_a_killed_writer_process_is_replaced_and_loses_no_row(
    process_db: SqlDatabase,
) -> None:
    db = process_db
    ledger = WriteBehindUsageStore(db.usage)
    await ledger.settle("k", P, 0, 3)
    await ledger.flush()
    process = db.writer._process._proc
    assert process is not None
    process.kill()  # not reaped yet: the next exchange may find it gone mid-way

    await ledger.settle("k", P, 0, 4)
    failures = []
    try:
        await ledger.flush()
    except ConnectionError as exc:  # the usage stayed queued; a new process takes it
        failures.append(str(exc))
        await ledger.flush()
    assert all("writer process stopped" in f for f in failures)

    assert db.writer._process._proc is not process
    assert (await db.usage.get("k", P)).used_tokens == 7


async def test_the_writer_process_outlives_a_group_signal_until_its_input_ends(
    process_db: SqlDatabase,
) -> None:
    db = process_db
    await db.writer.start()
    process = db.writer._process._proc
    assert process is not None
    process.send_signal(signal.SIGTERM)  # as systemd or Ctrl-C would, to the whole group
    process.send_signal(signal.SIGINT)
    await asyncio.sleep(0.5)

    ledger = WriteBehindUsageStore(db.usage)
    await ledger.settle("k", P, 0, 5)
    await ledger.flush()  # the last rows still go through it
    assert db.writer._process._proc is process
    await db.dispose()  # its input ends: it exits

    assert process.returncode == 0
    reopened = SqlDatabase.from_url(db.engine.url.render_as_string(hide_password=False))
    try:
        assert (await reopened.usage.get("k", P)).used_tokens == 5
    finally:
        await reopened.dispose()


async def test_waiting_cache_entries_are_bounded_while_the_database_is_away(
    db: SqlDatabase,
) -> None:
    cache = WriteBehindCompletionCache(db.cache, index=True, max_pending=3)
    await _rename(db, "completion_cache", "cache_away")
    for n in range(5):
        await cache.put(_entry(f"k{n}"))
        with pytest.raises(Exception, match="completion_cache"):
            await cache.flush()
    await _rename(db, "cache_away", "completion_cache")
    await cache.flush()

    kept = [key for key in (f"k{n}" for n in range(5)) if await db.cache.peek(key, NOW)]
    assert kept == ["k2", "k3", "k4"]  # the newest three; the cache forgot the rest


async def test_rows_the_database_rejects_are_set_aside_and_the_rest_written(
    db: SqlDatabase,
) -> None:
    # NULL in a NOT NULL column: what any database refuses, whatever is retried.
    ledger = WriteBehindUsageStore(db.usage)
    for key in ("a", None, "b"):
        await ledger.settle(key, P, 0, 7)  # type: ignore[arg-type]
    cache = WriteBehindCompletionCache(db.cache, index=True)
    bad = replace(_entry("bad"), model=None)  # type: ignore[arg-type]
    for entry in (_entry("x"), bad, _entry("y")):
        await cache.put(entry)

    with capture_logs() as logged:
        await ledger.flush()
        await cache.flush()

    assert ledger.pending == 0
    assert [(r.key_id, r.used_tokens) for r in await db.usage.list()] == [("a", 7), ("b", 7)]
    assert await db.cache.peek("bad", NOW) is None
    assert [await db.cache.peek(k, NOW) is not None for k in ("x", "y")] == [True, True]
    dead = [(e["store"], e["ids"]) for e in logged if e["event"] == "rows_dead_lettered"]
    assert dead == [("usage", [f"None/{P}"]), ("completion_cache", ["bad"])]


async def test_hits_the_hot_cache_answers_keep_an_entry_from_eviction(db: SqlDatabase) -> None:
    cache = WriteBehindCompletionCache(db.cache, index=True)
    hot = MemoryHotCache()
    older, newer = (
        replace(_entry("older"), created_at=NOW),
        replace(_entry("newer"), created_at=NOW + timedelta(seconds=1)),
    )
    for entry in (older, newer):
        await cache.put(entry)
    await hot.put(older, 3600)
    await cache.flush()

    # Served from the hot layer only: the durable layer never sees these requests.
    recording = HitRecordingHotCache(hot, cache, lambda: NOW + timedelta(seconds=5))
    assert await recording.get("older") == older
    assert await recording.get("absent") is None
    await cache.flush()

    assert await cache.evict(1) == 1
    assert await cache.get("older", NOW) is not None  # hit last (in the hot layer): kept
    assert await cache.get("newer", NOW) is None
    stored = await db.cache.peek("older", NOW)
    assert stored is not None
    assert stored.hit_count == 0  # a hot hit moves the time only
