"""The per-model quotas' ledger across replicas in Redis (``model-usage`` keys, the quota's
scripts): exact across two replicas, and a crashed replica's settled tokens on a model whose
id holds a tab and a colon are taken over at the next start and written to
``key_model_usage`` once. The replica fixtures are the quota's (``test_redis_quota``)."""

from __future__ import annotations

import asyncio

import pytest

from integration.storage.test_redis_quota import (
    P,
    Replica,
    client,
    crash,
    database,
    key,
    prefix,
    replica,
)
from llmserver.adapters.sql import SqlDatabase
from llmserver.domain.quota import UsageRecord, model_ledger_id

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

__all__ = ["client", "database", "key", "prefix", "replica"]  # fixtures used here

LEDGER = "model-usage"


async def test_two_replicas_never_reserve_past_a_models_quota(
    replica: Replica, database: SqlDatabase, key: str
) -> None:
    ledger_id = model_ledger_id(key, "chat")
    a, b = [await replica(database.model_quota, LEDGER) for _ in range(2)]

    results = await asyncio.gather(*(s.reserve(ledger_id, P, 7, 100) for s in [a, b] * 25))

    assert sum(r.admitted for r in results) == 100 // 7
    assert (await b.get(ledger_id, P)).reserved_tokens == (100 // 7) * 7
    # Another model of the key, and the key's own ledger, are counted apart.
    assert (await a.reserve(model_ledger_id(key, "embed"), P, 100, 100)).admitted


async def test_a_crashed_replicas_model_usage_is_taken_over_at_start(
    replica: Replica, database: SqlDatabase, key: str
) -> None:
    ledger_id = model_ledger_id(key, "odd:model\tid")
    a = await replica(database.model_quota, LEDGER)
    await a.reserve(ledger_id, P, 40, 100)
    await a.settle(ledger_id, P, 40, 30)
    await crash(a)

    b = await replica(database.model_quota, LEDGER)
    taken = await b.reconcile()
    await b.flush()

    assert taken == 1
    assert await database.model_quota.get(ledger_id, P) == UsageRecord(ledger_id, P, 30, 0, 1, 0)
    assert await database.usage.get(key, P) == UsageRecord(key, P)
