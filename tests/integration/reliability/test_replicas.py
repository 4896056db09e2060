"""Several replicas, one truth: limits hold across three server processes sharing one
PostgreSQL database and one Redis database (``http_replicas``: http models on the loopback
upstream, which counts the calls open at once). RPM and the monthly quota, TPM and
max_parallel, a key's budget, a team's RPM, TPM, budget and max_parallel over its keys, and
through the openai SDK: the TPM headers parse, a refusal is a ``RateLimitError`` with its
message. One module, so the three servers start once."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import httpx
import openai
import pytest

from integration.reliability.faultkit import SOAK, Upstream, bearer, chat_body, create_key
from integration.reliability.replicakit import (
    PRICE,
    PRICED,
    RETRY_AFTER_MOST_S,
    WINDOW_S,
    Replicas,
    check_quota,
    check_rpm_burst,
    fire,
)
from livesupport import closed_after_test

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

RPM = 50
BURST = 900 if SOAK else 300
CONCURRENCY = 300
QUOTA_REQUESTS = 20
QUOTA_HAMMER = 120 if SOAK else 60
TPM = 1_000
TPM_HAMMER = 300
MAX_PARALLEL = 4
UNLIMITED_RPM = 1_000_000
"""Out of the way: a key's RPM left out takes its role's default (60)."""
BUDGET = Decimal("0.01")
BUDGET_HAMMER, BUDGET_CONCURRENCY, BUDGET_MAX_TOKENS = 60, 60, 8
TEAM_RPM, TEAM_RPM_PER_KEY = 20, 30
TEAM_TPM_WAVES = 10


async def test_rpm_limit_holds_across_replicas(http_replicas: Replicas) -> None:
    await check_rpm_burst(http_replicas, RPM, BURST, CONCURRENCY, model="fast")


async def test_quota_holds_across_replicas(http_replicas: Replicas) -> None:
    await check_quota(http_replicas, QUOTA_REQUESTS, QUOTA_HAMMER, CONCURRENCY, model="fast")


async def _hammer(
    replicas: Replicas, key: str, model: str, count: int, max_tokens: int
) -> list[httpx.Response]:
    """``count`` requests at once, round-robin over the replicas, each on its own connection."""
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        return await asyncio.gather(
            *(
                client.post(
                    replicas.urls[i % len(replicas.urls)] + "/v1/chat/completions",
                    headers=bearer(key),
                    json={
                        "model": model,
                        "messages": [{"role": "user", "content": f"request {i}"}],
                        "max_tokens": max_tokens,
                    },
                )
                for i in range(count)
            )
        )


def _answered(responses: list[httpx.Response]) -> tuple[list[httpx.Response], list[httpx.Response]]:
    """The answers (200) and the refusals (429) of a hammering."""
    return [r for r in responses if r.status_code == 200], [
        r for r in responses if r.status_code == 429
    ]


async def _team(replicas: Replicas, name: str, **limits: object) -> None:
    """A team made through the admin API of the last replica."""
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.post(
            replicas.urls[-1] + "/admin/teams",
            headers=bearer(replicas.admin_key),
            json={"name": name, **limits},
        )
    assert answer.status_code == 201, answer.text


async def _members(replicas: Replicas, team: str, count: int, **limits: object) -> list[str]:
    """``count`` keys of ``team``, the i-th made on replica i (mod 3): each replica must
    find the team of keys it did not make."""
    urls = replicas.urls
    return [
        (
            await create_key(
                urls[i % len(urls)], replicas.admin_key, f"{team}-{i}", team=team, **limits
            )
        )["key"]
        for i in range(count)
    ]


async def _hammer_all(
    replicas: Replicas, keys: list[str], model: str, per_key: int, max_tokens: int
) -> list[httpx.Response]:
    """``_hammer`` with every key at once, ``per_key`` requests each."""
    answered = await asyncio.gather(
        *(_hammer(replicas, key, model, per_key, max_tokens) for key in keys)
    )
    return [response for responses in answered for response in responses]


async def test_a_tpm_key_never_gets_more_than_its_tokens_in_a_minute(
    http_replicas: Replicas,
) -> None:
    created = await create_key(
        http_replicas.urls[0],
        http_replicas.admin_key,
        "tpm",
        tpm_limit=TPM,
        rpm_limit=UNLIMITED_RPM,
    )
    started = time.monotonic()

    responses = await _hammer(http_replicas, created["key"], "fast", TPM_HAMMER, max_tokens=20)

    elapsed = time.monotonic() - started
    admitted, refused = _answered(responses)
    used = sum(r.json()["usage"]["total_tokens"] for r in admitted)
    print(
        f"\ntpm {TPM}: {TPM_HAMMER} requests in {elapsed:.1f}s -> {len(admitted)} x 200, "
        f"{used} tokens"
    )
    assert len(admitted) + len(refused) == TPM_HAMMER
    # The whole run lies in one window, so no 60 s window held more than the limit.
    assert elapsed < WINDOW_S, "the run outlasted the window; nothing to check"
    assert used <= TPM
    # Admission holds prompt + max_tokens until a request settles: the first reservations
    # filled the window to within one more, before the rest arrived.
    remaining = [int(r.headers["x-ratelimit-remaining-tokens"]) for r in admitted]
    assert min(remaining) < 60
    assert all(r.json()["error"]["code"] == "rate_limit_exceeded" for r in refused)
    assert all("retry-after" in r.headers for r in refused)
    assert all(r.headers["x-ratelimit-limit-tokens"] == str(TPM) for r in responses)


async def test_max_parallel_never_has_a_fifth_request_in_flight(
    http_replicas: Replicas, upstream: Upstream
) -> None:
    created = await create_key(
        http_replicas.urls[1],
        http_replicas.admin_key,
        "parallel",
        max_parallel=MAX_PARALLEL,
        rpm_limit=UNLIMITED_RPM,
    )
    upstream.most_open = 0

    # Each "drip" answer takes ~0.5 s (10 tokens, 0.05 s apart): the first four overlap.
    responses = await _hammer(http_replicas, created["key"], "drip", 40, max_tokens=10)

    statuses = [r.status_code for r in responses]
    refused = [r for r in responses if r.status_code == 429]
    print(f"\nmax_parallel {MAX_PARALLEL}: {statuses.count(200)} x 200, {upstream.most_open} open")
    assert upstream.most_open == MAX_PARALLEL
    assert statuses.count(200) >= MAX_PARALLEL
    assert len(refused) + statuses.count(200) == 40
    assert {r.json()["error"]["code"] for r in refused} == {"too_many_parallel_requests"}


async def test_the_openai_sdk_reads_the_tpm_headers_and_raises_rate_limit_errors(
    http_replicas: Replicas,
) -> None:
    created = await create_key(
        http_replicas.urls[2], http_replicas.admin_key, "sdk", tpm_limit=60, rpm_limit=UNLIMITED_RPM
    )
    client = closed_after_test(
        openai.OpenAI(base_url=http_replicas.urls[2] + "/v1", api_key=created["key"], max_retries=0)
    )
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": "hi"}
    ]

    # Holds the prompt's bound (22 tokens here) + 35 of the 60 until it settles to its 8.
    raw = client.chat.completions.with_raw_response.create(
        model="fast", messages=messages, max_tokens=35
    )

    assert raw.parse().usage is not None
    assert int(raw.headers["x-ratelimit-limit-tokens"]) == 60
    assert 0 <= int(raw.headers["x-ratelimit-remaining-tokens"]) < 60
    assert raw.headers["x-ratelimit-reset-tokens"] == "60.000s"
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="fast", messages=messages, max_tokens=35)
    assert "Rate limit reached: 60 tokens per minute" in caught.value.message
    assert caught.value.response.headers["retry-after"]


async def test_a_shared_budget_is_never_passed_across_replicas(http_replicas: Replicas) -> None:
    urls = http_replicas.urls
    created = await create_key(
        urls[0], http_replicas.admin_key, "budget", budget_usd=str(BUDGET), budget_window="day"
    )
    body = {
        **chat_body("Count the sheep.", max_tokens=BUDGET_MAX_TOKENS, cache=False),
        "model": PRICED,
    }
    tally = await fire(
        http_replicas,
        created["key"],
        [dict(body) for _ in range(BUDGET_HAMMER)],
        BUDGET_CONCURRENCY,
    )
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.get(
            urls[2] + "/admin/budgets",
            headers=bearer(http_replicas.admin_key),
            params={"key_id": created["details"]["id"]},
        )
    [status] = answer.json()["data"]
    spent = Decimal(tally.usage_tokens) * PRICE / 10**6
    print(
        f"\nbudget ${BUDGET} on 3 replicas: {BUDGET_HAMMER} requests -> {tally.count(200)} x 200, "
        f"{tally.count(429)} x 429, spent ${spent}, counted ${status['spent_usd']}"
    )
    assert set(tally.statuses) == {200, 429}
    assert spent <= BUDGET
    # At $0.0001 a token every cost is whole nanodollars: the ledger is the answers' sum.
    assert Decimal(status["spent_usd"]) == spent
    assert status["reserved_usd"] == "0.00"
    assert Decimal(status["remaining_usd"]) == BUDGET - spent
    # Each admitted request held its worst case, so at least this many got in.
    worst = (tally.usage_tokens // max(1, tally.count(200)) + BUDGET_MAX_TOKENS) * PRICE / 10**6
    assert tally.count(200) >= int(BUDGET / worst) - 1


async def test_a_team_budget_shared_by_three_keys_is_never_passed_across_replicas(
    http_replicas: Replicas,
) -> None:
    urls, admin = http_replicas.urls, http_replicas.admin_key
    await _team(http_replicas, "replica team", budget_usd=str(BUDGET), budget_window="day")
    # Each key made on a replica of its own; each sends to all three.
    keys = await _members(http_replicas, "replica team", 3)
    body = {
        **chat_body("Count the goats.", max_tokens=BUDGET_MAX_TOKENS, cache=False),
        "model": PRICED,
    }
    per_key = BUDGET_HAMMER // 3
    tallies = await asyncio.gather(
        *(fire(http_replicas, key, [dict(body) for _ in range(per_key)], per_key) for key in keys)
    )
    async with httpx.AsyncClient(timeout=30) as client:
        shown = await client.get(urls[2] + "/admin/teams/replica team", headers=bearer(admin))
    budget = shown.json()["budget"]
    statuses = [status for tally in tallies for status in tally.statuses]
    spent = Decimal(sum(tally.usage_tokens for tally in tallies)) * PRICE / 10**6
    print(
        f"\nteam budget ${BUDGET}, 3 keys on 3 replicas: {BUDGET_HAMMER} requests -> "
        f"{statuses.count(200)} x 200, {statuses.count(429)} x 429, spent ${spent}, "
        f"counted ${budget['spent_usd']}"
    )
    assert set(statuses) == {200, 429}
    assert spent <= BUDGET
    assert Decimal(budget["spent_usd"]) == spent
    assert budget["reserved_usd"] == "0.00"
    assert Decimal(budget["remaining_usd"]) == BUDGET - spent


async def test_a_team_s_max_parallel_holds_across_its_keys_and_replicas(
    http_replicas: Replicas, upstream: Upstream
) -> None:
    await _team(http_replicas, "parallel team", max_parallel=MAX_PARALLEL)
    keys = await _members(http_replicas, "parallel team", 2, rpm_limit=UNLIMITED_RPM)
    upstream.most_open = 0

    # Two keys without limits of their own, 20 slow requests each, over the three replicas.
    responses = await _hammer_all(http_replicas, keys, "drip", 20, max_tokens=10)

    statuses = [r.status_code for r in responses]
    refused = [r for r in responses if r.status_code == 429]
    print(
        f"\nteam max_parallel {MAX_PARALLEL}: {statuses.count(200)} x 200, "
        f"{upstream.most_open} open"
    )
    assert upstream.most_open == MAX_PARALLEL
    assert statuses.count(200) >= MAX_PARALLEL
    assert len(refused) + statuses.count(200) == 40
    assert {r.json()["error"]["code"] for r in refused} == {"too_many_parallel_requests"}
    assert all("parallel team" in r.json()["error"]["message"] for r in refused)


async def test_a_team_s_rpm_admits_exactly_its_limit_over_three_keys_and_replicas(
    http_replicas: Replicas,
) -> None:
    await _team(http_replicas, "rpm team", rpm_limit=TEAM_RPM)
    keys = await _members(http_replicas, "rpm team", 3, rpm_limit=UNLIMITED_RPM)
    started = time.monotonic()

    responses = await _hammer_all(http_replicas, keys, "fast", TEAM_RPM_PER_KEY, max_tokens=2)

    elapsed = time.monotonic() - started
    admitted, refused = _answered(responses)
    print(
        f"\nteam rpm {TEAM_RPM}, 3 keys on 3 replicas: {len(responses)} requests in "
        f"{elapsed:.1f}s -> {len(admitted)} x 200, {len(refused)} x 429"
    )
    assert elapsed < WINDOW_S, "the run outlasted the window; nothing to check"
    assert len(admitted) == TEAM_RPM
    assert len(refused) == len(responses) - TEAM_RPM
    # The keys' own windows are far larger, so every answer shows the team's. One window
    # shared by the replicas hands out each remaining count once: TEAM_RPM - 1 down to 0.
    assert {r.headers["x-ratelimit-limit-requests"] for r in responses} == {str(TEAM_RPM)}
    remaining = sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in admitted)
    assert remaining == list(range(TEAM_RPM))
    assert {r.headers["x-ratelimit-remaining-requests"] for r in refused} == {"0"}
    assert all(0 < float(r.headers["retry-after"]) <= RETRY_AFTER_MOST_S for r in refused)
    assert {r.json()["error"]["code"] for r in refused} == {"rate_limit_exceeded"}
    named = f"{TEAM_RPM} requests per minute for team 'rpm team'"
    assert all(named in r.json()["error"]["message"] for r in refused)


async def test_a_team_s_tpm_is_never_passed_over_three_keys_and_replicas(
    http_replicas: Replicas,
) -> None:
    await _team(http_replicas, "tpm team", tpm_limit=TPM)
    keys = await _members(http_replicas, "tpm team", 3, rpm_limit=UNLIMITED_RPM)
    started = time.monotonic()

    # In waves, each answered before the next: settled answers keep only what they used,
    # so the window fills with usage (which a window per replica would let reach 3x the
    # limit), not with the reservations of one burst.
    responses: list[httpx.Response] = []
    for _ in range(TEAM_TPM_WAVES):
        responses += await _hammer_all(
            http_replicas, keys, "fast", TPM_HAMMER // TEAM_TPM_WAVES // len(keys), max_tokens=3
        )

    elapsed = time.monotonic() - started
    admitted, refused = _answered(responses)
    used = sum(r.json()["usage"]["total_tokens"] for r in admitted)
    print(
        f"\nteam tpm {TPM}, 3 keys on 3 replicas: {len(responses)} requests in {elapsed:.1f}s "
        f"-> {len(admitted)} x 200, {len(refused)} x 429, {used} tokens"
    )
    assert len(admitted) + len(refused) == len(responses)
    # The whole run lies in one window, so no 60 s window held more than the limit.
    assert elapsed < WINDOW_S, "the run outlasted the window; nothing to check"
    assert used <= TPM
    assert refused
    # The keys have no TPM of their own: every answer shows the team's window, which
    # reservations filled to within one more (~25 tokens each).
    assert {r.headers["x-ratelimit-limit-tokens"] for r in responses} == {str(TPM)}
    assert min(int(r.headers["x-ratelimit-remaining-tokens"]) for r in admitted) < 30
    assert {r.json()["error"]["code"] for r in refused} == {"rate_limit_exceeded"}
    named = f"{TPM} tokens per minute for team 'tpm team'"
    assert all(named in r.json()["error"]["message"] for r in refused)
    assert all(0 < float(r.headers["retry-after"]) <= RETRY_AFTER_MOST_S for r in refused)
