"""The per-model quotas' ledger (``ModelLimit.quota_tokens``): the usage stores' contract
over ledger ids that are a key's and a model's (``quota.model_ledger_id``), with the
longest model id a key may be limited on, colons and tabs in it, through every adapter
(memory, SQL, written behind to SQLite, Redis written behind to PostgreSQL)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from llmserver.adapters.sql import SqlDatabase
from llmserver.domain.ports import UsageStore
from llmserver.domain.quota import UsageRecord, model_ledger_id
from llmserver.domain.registry import MODEL_ID_MAX_CHARS

pytestmark = pytest.mark.parametrize("ledger", ["model_quota"])

P = "2026-03"
LONGEST = "é" * MODEL_ID_MAX_CHARS
MODELS = (LONGEST, "llama3:8b", "tab\there")


async def flushed(usage_store: UsageStore) -> None:
    flush = getattr(usage_store, "flush", None)
    if flush is not None:  # written behind: the database must take it too
        await flush()


async def test_each_model_of_a_key_counts_on_its_own(usage_store: UsageStore) -> None:
    key = uuid.uuid4().hex
    ids = [model_ledger_id(key, model) for model in MODELS]
    other_key = model_ledger_id(uuid.uuid4().hex, LONGEST)

    for n, ledger_id in enumerate(ids):
        assert (await usage_store.reserve(ledger_id, P, 10 + n, 12)).admitted
    assert not (await usage_store.reserve(ids[0], P, 3, 12)).admitted
    assert (await usage_store.reserve(other_key, P, 12, 12)).admitted
    await usage_store.settle(ids[0], P, 10, 4)
    await usage_store.settle(ids[1], "9999-12", 0, 5, cache_hit=True)
    await usage_store.release(ids[2], P, 12)
    await flushed(usage_store)

    assert await usage_store.get(ids[0], P) == UsageRecord(ids[0], P, 4, 0, 1, 0)
    assert await usage_store.get(ids[1], P) == UsageRecord(ids[1], P, reserved_tokens=11)
    assert await usage_store.list(key_id=ids[1]) == [
        UsageRecord(ids[1], P, reserved_tokens=11),
        UsageRecord(ids[1], "9999-12", 5, 0, 1, 1),
    ]
    assert (await usage_store.get(ids[2], P)).reserved_tokens == 0
    assert (await usage_store.reserve(ids[0], P, 8, 12)).admitted
    assert {r.key_id for r in await usage_store.list(period=P)} >= {*ids[:2], other_key}


async def test_concurrent_reservations_never_exceed_a_models_quota(
    usage_store: UsageStore,
) -> None:
    ledger_id = model_ledger_id(uuid.uuid4().hex, LONGEST)
    results = await asyncio.gather(*(usage_store.reserve(ledger_id, P, 7, 100) for _ in range(50)))
    assert sum(r.admitted for r in results) == 100 // 7
    assert (await usage_store.get(ledger_id, P)).reserved_tokens == 14 * 7


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> SqlDatabase:
    db: SqlDatabase = request.getfixturevalue(f"{request.param}_db")
    return db


async def test_the_table_holds_a_key_and_its_longest_model_apart(
    database: SqlDatabase, ledger: str
) -> None:
    """What the written-behind ledgers add is one row per key, model and period."""
    key = "f" * 64  # the key id column's width
    ids = [model_ledger_id(key, model) for model in MODELS]

    await database.model_quota.add([UsageRecord(i, "9999-12", 2**62, 0, 2**40, 7) for i in ids])
    await database.model_quota.add([UsageRecord(ids[0], "9999-12", 1, 0, 1, 0)])

    listed = await database.model_quota.list(period="9999-12")
    assert sorted(r.key_id for r in listed) == sorted(ids)
    assert await database.model_quota.get(ids[0], "9999-12") == UsageRecord(
        ids[0], "9999-12", 2**62 + 1, 0, 2**40 + 1, 7
    )
    assert await database.usage.list() == []
