"""A backend that hangs and a client that goes away: the request ends cleanly, the slot and
the quota reservation are given back, and the server keeps serving."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration.reliability.faultkit import (
    Upstream,
    bearer,
    chat_body,
    create_key,
    http_models_file,
    metric_value,
    start_servers,
    usage_of,
    wait_until,
)
from livesupport import (
    TEST_SECRET,
    IssuedKeys,
    LiveServer,
    free_port,
    issue_keys,
    migrate,
    server_env,
    stop_server,
)

pytestmark = pytest.mark.slow

TIMEOUT_S = 1.0


@dataclass
class HttpModelServer:
    url: str
    keys: IssuedKeys
    upstream: Upstream
    log: Path


@pytest.fixture(scope="module")
def http_server(
    upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HttpModelServer]:
    """A server with only http models (on the loopback upstream) and a short timeout."""
    root = tmp_path_factory.mktemp("http-models")
    database_url = f"sqlite+aiosqlite:///{root / 'llmserver.db'}"
    env = server_env(
        database_url,
        root / "no-demo-model",
        LLMSERVER_PROFILE="none",
        LLMSERVER_MODELS_FILE=str(http_models_file(root / "models.toml", upstream)),
        LLMSERVER_REQUEST_TIMEOUT_S=str(TIMEOUT_S),
    )
    migrate(database_url)
    keys = asyncio.run(issue_keys(database_url, TEST_SECRET))
    port = free_port()
    [process] = start_servers([env], [root / "server.log"], [port])
    yield HttpModelServer(f"http://127.0.0.1:{port}", keys, upstream, root / "server.log")
    stop_server(process)


async def _fresh_key(base_url: str, admin_key: str) -> tuple[str, str]:
    created = await create_key(base_url, admin_key, "faults", quota_tokens=1_000_000)
    return created["key"], created["details"]["id"]


def _is_openai_error(response: httpx.Response) -> bool:
    error = response.json().get("error", {})
    return set(error) == {"message", "type", "param", "code"}


async def test_hanging_backend_times_out_cleanly(http_server: HttpModelServer) -> None:
    key, key_id = await _fresh_key(http_server.url, http_server.keys.admin)
    async with httpx.AsyncClient(base_url=http_server.url, timeout=30) as client:
        started = time.monotonic()
        responses = await asyncio.gather(
            *(
                client.post(
                    "/v1/chat/completions",
                    headers=bearer(key),
                    json=chat_body(model="hang", max_tokens=50, stream=i % 2 == 1),
                )
                for i in range(6)
            )
        )
        elapsed = time.monotonic() - started
        print(f"\nhanging backend: 6 requests -> {[r.status_code for r in responses]}")
        assert [r.status_code for r in responses] == [504] * 6
        assert all(_is_openai_error(r) for r in responses)
        assert {r.json()["error"]["type"] for r in responses} == {"timeout_error"}
        # Generous bound: the point is that the request ends, not how fast.
        assert elapsed < 10 * TIMEOUT_S + 10

        async def upstream_released() -> bool:
            return http_server.upstream.open_connections == 0

        assert await wait_until(upstream_released, 10)
        usage = await usage_of(http_server.url, http_server.keys.admin, key_id)
        assert usage["reserved_tokens"] == 0
        assert usage["used_tokens"] == 0
        after = await client.post(
            "/v1/chat/completions", headers=bearer(key), json=chat_body(model="fast")
        )
        assert after.status_code == 200, after.text
        metrics = (await client.get("/metrics")).text
    in_flight = metric_value(
        metrics, "llmserver_http_requests_in_flight", 'route="/v1/chat/completions"'
    )
    assert in_flight == 0


async def test_a_malformed_upstream_answer_is_a_502(http_server: HttpModelServer) -> None:
    """A chunk nested 100k deep (a RecursionError in the parser): a non-streaming request
    gets a 502 in OpenAI's shape, a stream its tokens and then an ``upstream_error`` event
    and ``[DONE]``; both say the answer was malformed, neither is an internal error."""
    key, _ = await _fresh_key(http_server.url, http_server.keys.admin)
    async with httpx.AsyncClient(base_url=http_server.url, timeout=30) as client:
        whole = await client.post(
            "/v1/chat/completions", headers=bearer(key), json=chat_body(model="malformed")
        )
        streamed = await client.post(
            "/v1/chat/completions",
            headers=bearer(key),
            json=chat_body(model="malformed", stream=True),
        )
    assert whole.status_code == 502, whole.text
    assert _is_openai_error(whole)
    assert whole.json()["error"]["code"] == "upstream_error"
    assert "sent a malformed answer" in whole.json()["error"]["message"]
    assert streamed.status_code == 200
    events = [line.removeprefix("data: ") for line in streamed.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == "upstream_error"
    assert "sent a malformed answer" in error["message"]
    assert sum(" tok" in event for event in events) == 3


async def _read_some_then_disconnect(
    base_url: str, key: str, body: dict[str, Any], chunks: int
) -> str:
    """Open a stream, read ``chunks`` content chunks, then drop the connection."""
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=30) as client,
        client.stream("POST", "/v1/chat/completions", headers=bearer(key), json=body) as response,
    ):
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        seen = 0
        async for line in response.aiter_lines():
            if _content(line):
                seen += 1
                if seen >= chunks:
                    break
    return request_id


def _content(line: str) -> str:
    """The generated text an SSE line carries ('' for the role chunk and the rest)."""
    if not line.startswith("data: {"):
        return ""
    choices = json.loads(line.removeprefix("data: ")).get("choices") or [{}]
    return str(choices[0].get("delta", {}).get("content") or "")


async def _log_row(base_url: str, admin_key: str, key_id: str, request_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        for _ in range(100):
            page = await client.get(
                "/admin/logs", headers=bearer(admin_key), params={"key_id": key_id}
            )
            rows = [r for r in page.json()["data"] if r["request_id"] == request_id]
            if rows:
                row: dict[str, Any] = rows[0]
                return row
            await asyncio.sleep(0.1)
    raise AssertionError(f"no request-log row for {request_id}")


async def _upstream_stopped_early(upstream: Upstream, before: int, max_tokens: int) -> int:
    """Once the upstream connection is released, nothing more is sent and less than half of
    ``max_tokens`` was; the tokens the upstream sent since ``before``."""

    async def upstream_released() -> bool:
        return upstream.open_connections == 0

    assert await wait_until(upstream_released, 10)
    sent = upstream.drip_tokens_sent - before
    await asyncio.sleep(0.5)
    assert upstream.drip_tokens_sent - before == sent  # generation stopped, not paused
    assert sent < max_tokens / 2
    return sent


async def test_client_disconnect_stops_upstream_generation(http_server: HttpModelServer) -> None:
    upstream = http_server.upstream
    key, key_id = await _fresh_key(http_server.url, http_server.keys.admin)
    max_tokens = 400  # 20 s of dripping if nobody stopped it
    before = upstream.drip_tokens_sent
    request_id = await _read_some_then_disconnect(
        http_server.url, key, chat_body(model="drip", max_tokens=max_tokens, stream=True), 3
    )
    sent = await _upstream_stopped_early(upstream, before, max_tokens)

    row = await _log_row(http_server.url, http_server.keys.admin, key_id, request_id)
    usage = await usage_of(http_server.url, http_server.keys.admin, key_id)
    print(f"\nhttp disconnect: upstream sent {sent} of {max_tokens}, row {row['status']}")
    assert row["status"] == 499
    assert 3 <= row["completion_tokens"] <= sent
    assert usage["reserved_tokens"] == 0
    assert usage["used_tokens"] == row["prompt_tokens"] + row["completion_tokens"]


async def _post_then_disconnect(base_url: str, key: str, body: dict[str, Any], started: Any) -> str:
    """Send a non-streaming request and drop the connection once ``started()`` holds."""
    request_id = uuid.uuid4().hex
    headers = bearer(key) | {"x-request-id": request_id}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        post = asyncio.create_task(client.post("/v1/chat/completions", headers=headers, json=body))
        assert await wait_until(started, 10)
        assert not post.done()
        post.cancel()  # closes the connection mid-request
        with pytest.raises(asyncio.CancelledError):
            await post
    return request_id


async def test_client_disconnect_stops_a_non_streaming_upstream_call(
    http_server: HttpModelServer,
) -> None:
    upstream = http_server.upstream
    key, key_id = await _fresh_key(http_server.url, http_server.keys.admin)
    max_tokens = 400  # 20 s of dripping if nobody stopped it
    before = upstream.drip_tokens_sent

    async def dripping() -> bool:
        return upstream.drip_tokens_sent - before >= 3

    request_id = await _post_then_disconnect(
        http_server.url, key, chat_body(model="drip", max_tokens=max_tokens), dripping
    )
    sent = await _upstream_stopped_early(upstream, before, max_tokens)

    row = await _log_row(http_server.url, http_server.keys.admin, key_id, request_id)
    usage = await usage_of(http_server.url, http_server.keys.admin, key_id)
    print(f"\nhttp non-streaming disconnect: upstream sent {sent} of {max_tokens}")
    assert (row["status"], row["error_code"]) == (499, "client_closed_request")
    # Nothing was delivered: the client pays for its prompt only.
    assert row["completion_tokens"] == 0
    assert usage["reserved_tokens"] == 0
    assert usage["used_tokens"] == row["prompt_tokens"] > 0
    # The access log says 499 too, and nothing failed on the way out.
    lines = [json.loads(line) for line in http_server.log.read_text().splitlines()]
    mine = [line for line in lines if line.get("request_id") == request_id]
    assert [line.get("status") for line in mine if line.get("event") == "request"] == [499]
    assert not [line for line in mine if line.get("level") == "error"]


@pytest.mark.torch
async def test_client_disconnect_stops_local_generation(live_server: LiveServer) -> None:
    """The same on the torch demo model: the row leaves the batch, the queue empties."""
    url, admin = live_server.base_url, live_server.admin_key
    max_tokens = 480

    async def queue_empty() -> bool:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            metrics = (await client.get("/metrics")).text
        return metric_value(
            metrics, "llmserver_model_queue_depth", 'model="demo-tiny-llama"'
        ) == 0 and (
            metric_value(
                metrics, "llmserver_http_requests_in_flight", 'route="/v1/chat/completions"'
            )
            == 0
        )

    # The random-weight demo model samples, and may end on its own (an end token) before
    # the server notices, on a loaded machine, that the client left: that answer is a 200
    # (one CI run: 22 of 480 tokens) and tests nothing. Such a try is made again; a
    # disconnect never logged as one fails every try.
    for _ in range(3):
        key, key_id = await _fresh_key(url, admin)
        request_id = await _read_some_then_disconnect(
            url,
            key,
            chat_body("Tell a long story.", max_tokens=max_tokens, stream=True, cache=False),
            1,
        )
        assert await wait_until(queue_empty, 20)
        row = await _log_row(url, admin, key_id, request_id)
        print(f"\ntorch disconnect: {row['completion_tokens']} of {max_tokens} tokens produced")
        if row["status"] != 200:
            break
    usage = await usage_of(url, admin, key_id)
    assert row["status"] == 499
    assert row["completion_tokens"] < max_tokens
    assert usage["reserved_tokens"] == 0
    assert usage["used_tokens"] == row["prompt_tokens"] + row["completion_tokens"]


def test_models_file_is_the_only_source(http_server: HttpModelServer) -> None:
    """Guards the fixture: with LLMSERVER_PROFILE=none only the http models exist."""
    models = httpx.get(http_server.url + "/v1/models", headers=bearer(http_server.keys.user))
    assert sorted(m["id"] for m in models.json()["data"]) == ["drip", "fast", "hang", "malformed"]
