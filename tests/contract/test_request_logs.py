from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from llmserver.adapters.memory import MemoryRequestLogStore
from llmserver.adapters.sql import SqlRequestLogStore
from llmserver.domain.keys import PREFIX_CHARS
from llmserver.domain.logs import REQUEST_ID_MAX_CHARS, CacheStatus, LogQuery, RequestLog
from llmserver.domain.pricing import MAX_PRICE_PER_MTOK, Prices, price_per_token
from llmserver.domain.registry import (
    DEPLOYMENT_NAME_MAX_CHARS,
    MODEL_ID_MAX_CHARS,
    SERVED_BY_MAX_CHARS,
)

T0 = datetime(2026, 3, 14, 12, 0, 0, 250000, tzinfo=UTC)
Store = MemoryRequestLogStore | SqlRequestLogStore


def row(n: int, **changes: object) -> RequestLog:
    fields: dict[str, object] = {
        "request_id": f"req-{n}",
        "created_at": T0 + timedelta(seconds=n),
        "route": "/v1/chat/completions",
        "status": 200,
        "latency_ms": 12.5 + n,
        "key_id": "key-a" if n % 2 else "key-b",
        "key_prefix": "abcdefabcdef",
        "model": "tiny" if n % 3 else "demo",
    }
    return RequestLog(**(fields | changes))  # type: ignore[arg-type]


async def test_rows_round_trip_with_every_field(log_store: Store) -> None:
    full = row(
        1,
        prompt_tokens=10,
        completion_tokens=20,
        cost_picodollars=13_500_000,
        cache_status=CacheStatus.HIT,
        error_code=None,
        stream=True,
        body='{"messages": []}',
        deployment="gpu-a",
        attempts=2,
    )
    bare = row(
        2, key_id=None, key_prefix=None, model=None, status=401, error_code="invalid_api_key"
    )

    await log_store.write([full, bare])
    rows, total = await log_store.query(LogQuery())

    assert total == 2
    assert list(rows) == [bare, full]
    assert type(rows[1].cache_status) is CacheStatus  # equality takes its string too


async def test_newest_first_with_pagination(log_store: Store) -> None:
    await log_store.write([row(n) for n in range(10)])
    await log_store.write([])

    page, total = await log_store.query(LogQuery(limit=3, offset=2))
    beyond, total_beyond = await log_store.query(LogQuery(limit=3, offset=20))

    assert total == total_beyond == 10
    assert [r.request_id for r in page] == ["req-7", "req-6", "req-5"]
    assert list(beyond) == []


async def test_filters_combine(log_store: Store) -> None:
    await log_store.write([row(n, status=429 if n in (3, 5) else 200) for n in range(12)])

    by_key, n_key = await log_store.query(LogQuery(key_id="key-a"))
    by_model, n_model = await log_store.query(LogQuery(model="demo", key_id="key-b"))
    by_status, _ = await log_store.query(LogQuery(status=429))
    by_time, n_time = await log_store.query(
        LogQuery(since=T0 + timedelta(seconds=4), until=T0 + timedelta(seconds=7))
    )

    assert n_key == 6
    assert all(r.key_id == "key-a" for r in by_key)
    assert [r.request_id for r in by_model] == ["req-6", "req-0"]
    assert n_model == 2
    assert [r.request_id for r in by_status] == ["req-5", "req-3"]
    # since is inclusive, until exclusive
    assert [r.request_id for r in by_time] == ["req-6", "req-5", "req-4"]
    assert n_time == 3


async def test_every_field_at_its_longest_legal_value_round_trips(
    log_store: Store,
) -> None:
    # On PostgreSQL each column enforces its length: a value the API lets through and the
    # column cannot hold failed the whole batch (and, retried, every later one).
    dearest = price_per_token(MAX_PRICE_PER_MTOK)
    longest = row(
        1,
        request_id="~" * REQUEST_ID_MAX_CHARS,  # the longest X-Request-ID kept as sent
        key_id=uuid.uuid4().hex,
        key_prefix="p" * PREFIX_CHARS,
        model="é" * MODEL_ID_MAX_CHARS,  # characters, not bytes; a 404's name is cut to it
        route=max(("/v1/chat/completions", "/v1/completions"), key=len),
        cache_status=max(CacheStatus, key=len),
        error_code="e" * 64,  # codes are identifiers set in code, all far shorter
        body="ü" * 100_000,
        prompt_tokens=2**31 - 1,
        completion_tokens=2**31 - 1,
        # The most those tokens can cost: at the highest price a model may have.
        cost_picodollars=Prices(dearest, dearest).cost(2**31 - 1, 2**31 - 1),
        # A fallback model's deployment: the longest model id, "/", the longest name.
        deployment="é" * MODEL_ID_MAX_CHARS + "/" + "d" * DEPLOYMENT_NAME_MAX_CHARS,
        attempts=2**31 - 1,
        team_id=uuid.uuid4().hex,  # what TeamAdmin issues
    )
    assert longest.deployment is not None
    assert len(longest.deployment) == SERVED_BY_MAX_CHARS

    await log_store.write([longest])

    assert list((await log_store.query(LogQuery()))[0]) == [longest]


async def test_filters_by_request_id_and_cache_status(log_store: Store) -> None:
    statuses = [CacheStatus.HIT, CacheStatus.MISS, None]
    await log_store.write([row(n, cache_status=statuses[n % 3]) for n in range(9)])

    hits, n_hits = await log_store.query(LogQuery(cache_status=CacheStatus.HIT))
    one, n_one = await log_store.query(LogQuery(request_id="req-4"))
    both, _ = await log_store.query(LogQuery(request_id="req-4", cache_status=CacheStatus.HIT))

    assert [r.request_id for r in hits] == ["req-6", "req-3", "req-0"]
    assert n_hits == 3
    assert ([r.request_id for r in one], n_one) == (["req-4"], 1)
    assert list(both) == []
