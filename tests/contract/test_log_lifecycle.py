"""Request-log export and retention, over every adapter: expired rows go, in batches or
whole monthly partitions, and the usage per day, key and model stays what it was."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from llmserver.adapters.memory import MemoryRequestLogStore
from llmserver.adapters.sql import SqlRequestLogStore
from llmserver.domain.logs import CacheStatus, DailyUsage, RequestLog
from llmserver.domain.ports import RequestLogRetention
from llmserver.domain.pricing import MAX_PRICE_PER_MTOK, Prices, price_per_token
from llmserver.domain.registry import MODEL_ID_MAX_CHARS

LogStorage = tuple[MemoryRequestLogStore | SqlRequestLogStore, RequestLogRetention]

JAN = datetime(2025, 1, 10, 23, 59, 59, 500000, tzinfo=UTC)
LONG_KEY = "k" * 64
LONG_MODEL = "é" * MODEL_ID_MAX_CHARS
DEAREST = price_per_token(MAX_PRICE_PER_MTOK)
MOST = Prices(DEAREST, DEAREST).cost(2**31 - 1, 2**31 - 1)
"""The largest cost a row can hold: the most tokens of each kind at the highest prices."""


def row(request_id: str, at: datetime, **changes: object) -> RequestLog:
    fields: dict[str, object] = {
        "request_id": request_id,
        "created_at": at,
        "route": "/v1/chat/completions",
        "status": 200,
        "latency_ms": 3.0,
        "key_id": LONG_KEY,
        "model": LONG_MODEL,
        "prompt_tokens": 10,
        "completion_tokens": 5,
    }
    return RequestLog(**(fields | changes))  # type: ignore[arg-type]


ROWS = [
    row("jan-1", JAN, cost_picodollars=MOST),
    # Summed with jan-1, past what a float (or a float counter) holds exactly.
    row(
        "jan-2",
        JAN,
        cache_status=CacheStatus.HIT,
        prompt_tokens=7,
        completion_tokens=0,
        cost_picodollars=1,
    ),
    row("jan-3", JAN + timedelta(seconds=1), status=429, key_id=None, model=None),
    row("feb-5", datetime(2025, 2, 5, tzinfo=UTC), model="other", cost_picodollars=3_000_000),
    row("feb-20", datetime(2025, 2, 20, tzinfo=UTC)),
]


async def test_export_streams_rows_oldest_first_in_batches(log_storage: LogStorage) -> None:
    store, _ = log_storage
    await store.write(list(reversed(ROWS)))

    every = [r async for r in store.export(JAN, batch_rows=2)]
    window = [
        r.request_id
        async for r in store.export(
            JAN + timedelta(seconds=1), datetime(2025, 2, 20, tzinfo=UTC), batch_rows=1
        )
    ]

    # Same-instant rows come in the order they were stored (their ids: newest first here).
    assert every == [ROWS[1], ROWS[0], ROWS[2], ROWS[3], ROWS[4]]
    assert window == ["jan-3", "feb-5"]


async def test_daily_usage_counts_per_day_key_and_model(log_storage: LogStorage) -> None:
    store, retention = log_storage
    await store.write(ROWS)

    usage = await retention.daily_usage(date(2025, 1, 1), date(2025, 3, 1))
    only_other = await retention.daily_usage(date(2025, 1, 1), date(2025, 3, 1), model="other")

    assert list(usage) == [
        DailyUsage(
            date(2025, 1, 10),
            LONG_KEY,
            LONG_MODEL,
            2,
            17,
            5,
            cache_hits=1,
            cost_picodollars=MOST + 1,
        ),
        DailyUsage(date(2025, 1, 11), None, None, 1, 10, 5, errors=1),  # past midnight UTC
        DailyUsage(date(2025, 2, 5), LONG_KEY, "other", 1, 10, 5, cost_picodollars=3_000_000),
        DailyUsage(date(2025, 2, 20), LONG_KEY, LONG_MODEL, 1, 10, 5),
    ]
    assert usage[0].cost_picodollars == 4_294_967_294_000_000_001
    assert list(only_other) == [
        DailyUsage(date(2025, 2, 5), LONG_KEY, "other", 1, 10, 5, cost_picodollars=3_000_000)
    ]


async def test_expired_rows_go_and_their_usage_stays(log_storage: LogStorage) -> None:
    store, retention = log_storage
    today = datetime.now(UTC)
    await store.write([*ROWS, row("today", today)])
    span = (date(2025, 1, 1), date(2025, 3, 1))
    usage = await retention.daily_usage(*span)
    # On PostgreSQL: January gets its partition (its rows move out of the default one);
    # February's rows stay in the default partition.
    created = await retention.prepare(datetime(2025, 1, 15, tzinfo=UTC), 0)
    assert list(created) in ([], ["request_logs_p202501"])

    removed = await retention.expire(datetime(2025, 2, 10, tzinfo=UTC), batch_rows=1)

    assert removed == 4
    assert [r.request_id async for r in store.export(JAN)] == ["feb-20", "today"]
    assert await retention.daily_usage(*span) == usage
    assert await retention.expire(datetime(2025, 2, 10, tzinfo=UTC)) == 0
    # Rows written later for an expired day add to what was rolled up.
    late = row("late", datetime(2025, 2, 5, 12, tzinfo=UTC), model="other", cost_picodollars=7)
    await store.write([late])
    again = await retention.daily_usage(date(2025, 2, 5), date(2025, 2, 6))
    assert again == [
        DailyUsage(date(2025, 2, 5), LONG_KEY, "other", 2, 20, 10, cost_picodollars=3_000_007)
    ]
    assert await retention.expire(datetime(2025, 3, 1, tzinfo=UTC)) == 2
    assert await retention.daily_usage(date(2025, 2, 5), date(2025, 2, 6)) == again


async def test_usage_is_counted_per_team_before_and_after_expiry(log_storage: LogStorage) -> None:
    store, retention = log_storage
    team, other = "a" * 32, "b" * 32
    day = datetime(2025, 1, 20, 12, tzinfo=UTC)
    await store.write(
        [
            row("in-team", day, team_id=team, cost_picodollars=5),
            row("moved", day, team_id=other, cost_picodollars=7),  # the key changed team
            row("no-team", day),
        ]
    )
    span = (date(2025, 1, 20), date(2025, 1, 21))
    usage = await retention.daily_usage(*span)
    # By day, key, team (none first), then model.
    assert [(u.team_id, u.requests, u.cost_picodollars) for u in usage] == [
        (None, 1, 0),
        (team, 1, 5),
        (other, 1, 7),
    ]
    assert await retention.daily_usage(*span, team_id=team) == [
        DailyUsage(
            date(2025, 1, 20), LONG_KEY, LONG_MODEL, 1, 10, 5, cost_picodollars=5, team_id=team
        )
    ]

    assert await retention.expire(datetime(2025, 1, 21, tzinfo=UTC)) == 3

    assert await retention.daily_usage(*span) == usage
