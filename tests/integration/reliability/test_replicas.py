"""Several replicas, one truth: limits hold across three server processes sharing one
Postgres database and one Redis database."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from integration.reliability.faultkit import (
    SOAK,
    Replicas,
    Tally,
    bearer,
    chat_body,
    count_rows,
    create_key,
    usage_of,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

RPM = 50
BURST = 900 if SOAK else 300
CONCURRENCY = 300
WINDOW_S = 60
QUOTA_REQUESTS = 20
HAMMER = 120 if SOAK else 60


async def _fire(replicas: Replicas, key: str, bodies: list[dict[str, object]]) -> Tally:
    """Send the bodies round-robin over the replicas, at most CONCURRENCY at a time."""
    tally = Tally()
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    replicas.urls[i % len(replicas.urls)] + "/v1/chat/completions",
                    headers=bearer(key),
                    json=body,
                )
                for i, body in enumerate(bodies)
            )
        )
    for response in responses:
        tally.add(response)
    return tally


async def test_rpm_limit_holds_across_replicas(replicas: Replicas) -> None:
    created = await create_key(replicas.urls[0], replicas.admin_key, "rpm-50", rpm_limit=RPM)
    started = time.monotonic()
    tally = await _fire(
        replicas, created["key"], [chat_body(max_tokens=2, cache=False) for _ in range(BURST)]
    )
    elapsed = time.monotonic() - started
    print(
        f"\nreplicas rpm: {BURST} requests in {elapsed:.1f}s -> {tally.count(200)} x 200, "
        f"{tally.count(429)} x 429"
    )
    assert set(tally.statuses) == {200, 429}
    assert tally.retry_after_missing == 0
    # The limit is a sliding minute: exact when the whole burst fits in one.
    assert elapsed < WINDOW_S, "the burst outlasted the rate-limit window; nothing to check"
    assert tally.count(200) == RPM
    assert tally.count(429) == BURST - RPM


async def test_quota_holds_across_replicas(replicas: Replicas) -> None:
    prompt, max_tokens = "Count the sheep in the meadow.", 8
    body = chat_body(prompt, max_tokens=max_tokens, cache=False)
    async with httpx.AsyncClient(timeout=60) as client:
        probe = await client.post(
            replicas.urls[0] + "/v1/chat/completions",
            headers=bearer(replicas.keys.user),
            json=body,
        )
    assert probe.status_code == 200, probe.text
    reservation = probe.json()["usage"]["prompt_tokens"] + max_tokens
    quota = QUOTA_REQUESTS * reservation
    created = await create_key(replicas.urls[1], replicas.admin_key, "quota-20", quota_tokens=quota)
    key_id = created["details"]["id"]

    tally = await _fire(replicas, created["key"], [dict(body) for _ in range(HAMMER)])
    usage = await usage_of(replicas.urls[2], replicas.admin_key, key_id)
    print(
        f"\nreplicas quota {quota}: {HAMMER} requests -> {tally.count(200)} x 200, "
        f"{tally.count(429)} x 429, used {usage['used_tokens']}, reported {tally.usage_tokens}"
    )
    assert set(tally.statuses) <= {200, 429}
    # Each admitted request held a full reservation while it ran, so at least QUOTA_REQUESTS
    # got in; more only if early stops settled below their reservation.
    assert tally.count(200) >= QUOTA_REQUESTS
    assert usage["used_tokens"] <= quota
    assert usage["reserved_tokens"] == 0
    assert usage["used_tokens"] == tally.usage_tokens
    assert usage["requests"] == tally.count(200)

    async def logged_tokens() -> int:
        return await count_rows(
            replicas.database_url,
            "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM request_logs "
            "WHERE key_id = $1 AND status = 200",
            key_id,
        )

    for _ in range(50):
        if await logged_tokens() == tally.usage_tokens:
            break
        await asyncio.sleep(0.1)
    assert await logged_tokens() == tally.usage_tokens
    assert (
        await count_rows(
            replicas.database_url, "SELECT COUNT(*) FROM request_logs WHERE key_id = $1", key_id
        )
        == HAMMER
    )
