"""A request body dribbled a byte at a time, or announced and never sent, is cut off with a
408 in OpenAI's error shape once it takes longer than LLMSERVER_BODY_READ_TIMEOUT_S, and the
server keeps serving everyone else meanwhile."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from livesupport import LiveServer, running_server

pytestmark = pytest.mark.slow

TIMEOUT_S = 1.0
DRIBBLERS = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server without models (a body is read before any model is looked at)."""
    root = tmp_path_factory.mktemp("slow-body")
    with running_server(
        root,
        root / "no-demo-model",
        LLMSERVER_PROFILE="none",
        LLMSERVER_BODY_READ_TIMEOUT_S=str(TIMEOUT_S),
    ) as server:
        yield server


CHUNKED = "Transfer-Encoding: chunked"
DRIBBLED = b'{"model": "demo", "messages": [' * 100


async def _dribble(
    base_url: str, path: str, key: str, framing: str = CHUNKED, dribbled: bytes = DRIBBLED
) -> tuple[int, dict[str, Any], float]:
    """POST with the headers saying ``framing``, then ``dribbled`` as chunks of one byte every
    0.1 s until the server answers; the status, the JSON body and the seconds it took."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    started = time.monotonic()
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n".encode()
    )
    answer = asyncio.ensure_future(reader.read(65536))
    try:
        for byte in dribbled:
            writer.write(b"1\r\n" + bytes([byte]) + b"\r\n")
            await writer.drain()
            done, _ = await asyncio.wait({answer}, timeout=0.1)
            if done:
                break
        head = (await asyncio.wait_for(answer, TIMEOUT_S + 5)).decode()
        # The status line, then (after the headers) the whole small JSON answer.
        while "\r\n\r\n" not in head or not head.rstrip().endswith("}"):
            head += (await asyncio.wait_for(reader.read(65536), 5)).decode()
    finally:
        writer.close()
    status = int(head.split(" ", 2)[1])
    body = head.split("\r\n\r\n", 1)[1]
    if "chunked" in head.split("\r\n\r\n", 1)[0].lower():  # one chunk: size line, data
        body = body.split("\r\n", 1)[1].rsplit("\r\n0\r\n", 1)[0]
    return status, json.loads(body), time.monotonic() - started


PATHS = ["/v1/chat/completions", "/admin/keys"]


@pytest.mark.parametrize("path", PATHS)
async def test_a_dribbled_body_times_out_with_408_while_others_are_served(
    server: LiveServer, path: str
) -> None:
    await _all_time_out_while_another_is_served(server, path, CHUNKED, DRIBBLED)


@pytest.mark.parametrize("framing", [CHUNKED, "Content-Length: 100"])
@pytest.mark.parametrize("path", PATHS)
async def test_a_body_that_never_comes_times_out_with_408_while_others_are_served(
    server: LiveServer, path: str, framing: str
) -> None:
    """The headers announce a body and not one byte of it follows: the wait for its first
    part is timed too."""
    await _all_time_out_while_another_is_served(server, path, framing, b"")


async def _all_time_out_while_another_is_served(
    server: LiveServer, path: str, framing: str, dribbled: bytes
) -> None:
    dribblers = [
        asyncio.create_task(_dribble(server.base_url, path, server.admin_key, framing, dribbled))
        for _ in range(DRIBBLERS)
    ]
    await asyncio.sleep(TIMEOUT_S / 2)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        started = time.monotonic()
        models = await client.get(
            "/v1/models", headers={"Authorization": f"Bearer {server.user_key}"}
        )
        served_in = time.monotonic() - started
    assert models.status_code == 200
    assert not any(d.done() for d in dribblers)  # they were still dribbling meanwhile

    answers = await asyncio.wait_for(asyncio.gather(*dribblers), 10 * TIMEOUT_S + 10)
    print(
        f"\n{path} ({framing}, {len(dribbled)} bytes dribbled): {DRIBBLERS} bodies -> "
        f"{sorted({a[0] for a in answers})} after "
        f"{min(a[2] for a in answers):.1f}-{max(a[2] for a in answers):.1f} s; "
        f"another client served in {served_in * 1000:.0f} ms meanwhile"
    )
    assert served_in < 1.0
    for status, body, took in answers:
        assert status == 408
        assert set(body["error"]) == {"message", "type", "param", "code"}
        assert body["error"]["code"] == "request_timeout"
        assert body["error"]["type"] == "invalid_request_error"
        assert f"within {TIMEOUT_S:g} s" in body["error"]["message"]
        assert TIMEOUT_S <= took < TIMEOUT_S + 5
