"""TPM and max_parallel across three replicas sharing one PostgreSQL and one Redis database,
on http models (the loopback upstream, which counts the calls open at once), and through
the openai SDK: the TPM headers parse, a refusal is a ``RateLimitError`` with its message."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from integration.reliability.faultkit import (
    Upstream,
    bearer,
    create_key,
    http_models_file,
)
from integration.reliability.replicakit import WINDOW_S, Replicas, running_replicas
from livesupport import closed_after_test

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

TPM = 1_000
HAMMER = 300
MAX_PARALLEL = 4
UNLIMITED_RPM = 1_000_000
"""Out of the way: a key's RPM left out takes its role's default (60)."""


@pytest.fixture(scope="module")
def http_replicas(
    postgres_url: str, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    """Three server processes in replicas mode serving only the upstream's http models."""
    root = tmp_path_factory.mktemp("limit-replicas")
    models = http_models_file(root / "models.toml", upstream)
    with running_replicas(
        postgres_url,
        root / "no-demo-model",
        root,
        LLMSERVER_PROFILE="none",
        LLMSERVER_MODELS_FILE=str(models),
    ) as replicas:
        yield replicas


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

    responses = await _hammer(http_replicas, created["key"], "fast", HAMMER, max_tokens=20)

    elapsed = time.monotonic() - started
    admitted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    used = sum(r.json()["usage"]["total_tokens"] for r in admitted)
    print(
        f"\ntpm {TPM}: {HAMMER} requests in {elapsed:.1f}s -> {len(admitted)} x 200, {used} tokens"
    )
    assert len(admitted) + len(refused) == HAMMER
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
