"""Whose answers the response cache keeps: each key its own (the default), or every key's
(``LLMSERVER_CACHE_SCOPE=global``). Per key, ``X-Cache`` cannot tell one tenant what another
asked."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from livesupport import LiveServer, running_server

pytestmark = pytest.mark.slow


def x_cache_of_each(base_url: str, keys: list[str]) -> list[str]:
    """The same greedy request sent by each key in turn."""
    body = {
        "model": "demo",
        "messages": [{"role": "user", "content": f"Has anyone asked {uuid.uuid4().hex}?"}],
        "max_tokens": 2,
        "temperature": 0,
    }
    with httpx.Client(base_url=base_url, timeout=60) as client:
        responses = [
            client.post("/v1/chat/completions", json=body, headers={"X-API-Key": key})
            for key in keys
        ]
    assert [r.status_code for r in responses] == [200] * len(keys)
    return [r.headers["x-cache"] for r in responses]


def test_by_default_another_key_s_identical_request_is_a_miss(live_server: LiveServer) -> None:
    keys = live_server.keys
    # The second key misses; its own repeat hits, so the cache is on.
    assert x_cache_of_each(live_server.base_url, [keys.user, keys.admin, keys.admin]) == [
        "MISS",
        "MISS",
        "HIT",
    ]


def test_a_global_cache_answers_every_key(tmp_path: Path, demo_model_dir: Path) -> None:
    with running_server(tmp_path, demo_model_dir, LLMSERVER_CACHE_SCOPE="global") as server:
        got = x_cache_of_each(server.base_url, [server.keys.user, server.keys.admin])
    assert got == ["MISS", "HIT"]
