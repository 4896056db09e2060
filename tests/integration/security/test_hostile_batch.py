"""A hostile request batched with other tenants' requests on the local model costs them
nothing: their answers and streams finish as if it had never been sent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from livesupport import LiveServer

pytestmark = pytest.mark.slow

MODEL = "demo-tiny-llama"
LONG = {"model": MODEL, "max_tokens": 150, "temperature": 1.0}
"""Long enough to be still generating while the hostile requests run."""


async def _key(http: httpx.AsyncClient, admin_key: str, name: str) -> dict[str, str]:
    created = await http.post(
        "/admin/keys",
        headers={"Authorization": f"Bearer {admin_key}"},
        json={"name": name, "rpm_limit": 1_000_000},
    )
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['key']}"}


@asynccontextmanager
async def _started_stream(
    http: httpx.AsyncClient, headers: dict[str, str], path: str, body: dict[str, Any]
) -> AsyncIterator[AsyncIterator[str]]:
    """A stream whose first text has arrived (so it is in the batch); yields its data lines."""
    async with http.stream("POST", path, headers=headers, json=body | {"stream": True}) as reply:
        assert reply.status_code == 200
        lines = (line.removeprefix("data: ") async for line in reply.aiter_lines() if line)
        async for data in lines:
            choice = json.loads(data)["choices"][0]
            if choice.get("text") or choice.get("delta", {}).get("content"):
                break
        yield lines


async def _finish(lines: AsyncIterator[str]) -> None:
    """The rest of a stream ends with a finish reason and then [DONE], and no error."""
    rest = [data async for data in lines]
    assert rest[-1] == "[DONE]", rest[-3:]
    chunks = [json.loads(data) for data in rest[:-1]]
    assert not [c for c in chunks if "error" in c]
    assert chunks[-1]["choices"][0]["finish_reason"] in {"stop", "length"}


async def test_hostile_requests_leave_other_tenants_requests_whole(live_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=120) as http:
        victim = await _key(http, live_server.admin_key, "victim")
        attacker = await _key(http, live_server.admin_key, "attacker")
        chat = LONG | {"messages": [{"role": "user", "content": "Tell me a story"}]}
        text = LONG | {"prompt": "Once upon a time"}
        async with (
            _started_stream(http, victim, "/v1/chat/completions", chat | {"seed": 1}) as one,
            _started_stream(http, victim, "/v1/completions", text | {"seed": 2}) as two,
        ):
            hostile = [
                ("/v1/chat/completions", chat | {"temperature": 1e-300, "max_tokens": 8}),
                ("/v1/completions", text | {"temperature": 5e-324, "max_tokens": 8}),
                ("/v1/completions", text | {"prompt": ""}),
                ("/v1/completions", text | {"prompt": [""]}),
            ]
            answers = await asyncio.gather(
                http.post("/v1/chat/completions", headers=victim, json=chat | {"seed": 3}),
                http.post("/v1/completions", headers=victim, json=text | {"seed": 4}),
                *(http.post(path, headers=attacker, json=body) for path, body in hostile),
            )
            await _finish(one)
            await _finish(two)
    *others, tiny_chat, tiny_text, empty, empty_list = answers
    for answer in [*others, tiny_chat, tiny_text]:
        assert answer.status_code == 200, answer.text
        assert answer.json()["usage"]["completion_tokens"] >= 1
    for answer in (empty, empty_list):
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["param"] == "prompt"
        assert answer.json()["error"]["type"] == "invalid_request_error"
