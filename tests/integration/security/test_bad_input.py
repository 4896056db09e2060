"""Hostile and broken requests get a clear 4xx in OpenAI's error shape, never a 5xx, and the
server keeps serving."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from livesupport import LiveServer

pytestmark = pytest.mark.slow

MODEL = "demo-tiny-llama"
CHAT = "/v1/chat/completions"


def _chat(**fields: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 2,
    } | fields


DEEP = b"[" * 100_000 + b"]" * 100_000
"""A JSON value nested 100,000 levels deep (a recursive decoder overflows its stack)."""
HI = b'{"role": "user", "content": "hi"'


JSON = "application/json"
Case = tuple[str, str, bytes, str, int, str | None]
"""(name, path, raw body, content type, expected status, expected error code or None)"""


def _bad_chat(name: str, status: int = 400, code: str | None = None, **fields: Any) -> Case:
    return (name, CHAT, json.dumps(_chat(**fields)).encode(), JSON, status, code)


CASES: list[Case] = [
    ("empty body", CHAT, b"", JSON, 400, "invalid_request"),
    ("not json", CHAT, b"{model: demo", JSON, 400, "invalid_request"),
    ("json array", CHAT, b"[1, 2, 3]", JSON, 400, "invalid_request"),
    ("json null", CHAT, b"null", JSON, 400, "invalid_request"),
    (
        "invalid utf-8",
        CHAT,
        b'{"model": "\xff\xfe\xfd", "messages": [{"role": "user", "content": "\xc3\x28"}]}',
        JSON,
        400,
        "invalid_request",
    ),
    (
        "deeply nested json",
        CHAT,
        b'{"model": "demo", "messages": ' + DEEP + b"}",
        JSON,
        400,
        "invalid_request",
    ),
    (
        "deeply nested unknown field",
        CHAT,
        b'{"model": "demo", "messages": [' + HI + b'}], "extra": ' + DEEP + b"}",
        JSON,
        400,
        "invalid_request",
    ),
    (
        "deeply nested unknown field in a message",
        CHAT,
        b'{"model": "demo", "messages": [' + HI + b', "extra": ' + DEEP + b"}]}",
        JSON,
        400,
        "invalid_request",
    ),
    (
        "completion with a deeply nested unknown field",
        "/v1/completions",
        b'{"model": "demo", "prompt": "hi", "extra": {"a": ' + DEEP + b"}}",
        JSON,
        400,
        "invalid_request",
    ),
    ("text/plain body", CHAT, b"hello", "text/plain", 400, "invalid_request"),
    ("missing messages", CHAT, json.dumps({"model": MODEL}).encode(), JSON, 400, None),
    (
        "temperature NaN",
        CHAT,
        b'{"model": "demo", "messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
        JSON,
        400,
        None,
    ),
    _bad_chat("empty messages", messages=[]),
    _bad_chat("unknown role", messages=[{"role": "wizard", "content": "x"}]),
    _bad_chat("content wrong type", messages=[{"role": "user", "content": 42}]),
    _bad_chat("max_tokens huge", code="context_length_exceeded", max_tokens=10**12),
    _bad_chat("max_tokens > int64", max_tokens=2**80),
    _bad_chat("max_tokens negative", max_tokens=-1),
    _bad_chat("max_tokens zero", max_tokens=0),
    _bad_chat("max_tokens float", max_tokens=1.5),
    _bad_chat("max_completion_tokens negative", max_completion_tokens=-7),
    _bad_chat("temperature negative", temperature=-1),
    _bad_chat("temperature huge", temperature=1e308),
    _bad_chat("top_p negative", top_p=-0.5),
    _bad_chat("n negative", n=-3),
    _bad_chat("n = 5", n=5),
    _bad_chat("seed huge", seed=2**70),
    _bad_chat("stop: 100 strings", stop=["x"] * 100),
    _bad_chat("unknown model", 404, "model_not_found", model="gpt-9-ultra"),
    _bad_chat("model wrong type", model=42),
    _bad_chat(
        "prompt longer than the context",
        code="context_length_exceeded",
        messages=[{"role": "user", "content": "word " * 5000}],
    ),
    (
        "completion prompt list of 2",
        "/v1/completions",
        json.dumps({"model": MODEL, "prompt": ["a", "b"]}).encode(),
        JSON,
        400,
        None,
    ),
    (
        "completion with a huge max_tokens",
        "/v1/completions",
        json.dumps({"model": MODEL, "prompt": "x", "max_tokens": 99_999_999}).encode(),
        JSON,
        400,
        "context_length_exceeded",
    ),
]


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.base_url, timeout=60) as http:
        created = http.post(
            "/admin/keys",
            headers={"Authorization": f"Bearer {live_server.admin_key}"},
            json={"name": "bad-input", "rpm_limit": 1_000_000},
        )
        assert created.status_code == 201, created.text
        http.headers["Authorization"] = f"Bearer {created.json()['key']}"
        yield http


def _assert_openai_error(response: httpx.Response, status: int, code: str | None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    if code is not None:
        assert error["code"] == code


@pytest.mark.parametrize(
    ("path", "body", "content_type", "status", "code"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_request_is_a_clear_4xx(
    client: httpx.Client, path: str, body: bytes, content_type: str, status: int, code: str | None
) -> None:
    response = client.post(path, content=body, headers={"content-type": content_type})
    _assert_openai_error(response, status, code)


def test_oversize_body_is_413(client: httpx.Client) -> None:
    body = json.dumps(_chat(messages=[{"role": "user", "content": "x" * 2_000_000}])).encode()
    response = client.post(CHAT, content=body, headers={"content-type": "application/json"})
    _assert_openai_error(response, 413, "request_too_large")


def test_oversize_body_without_content_length_is_413(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "demo", "messages": [{"role": "user", "content": "'
        for _ in range(40):
            yield b"y" * 65_536
        yield b'"}]}'

    response = client.post(CHAT, content=chunks(), headers={"content-type": "application/json"})
    _assert_openai_error(response, 413, "request_too_large")


def test_bad_admin_bodies_are_4xx(live_server: LiveServer) -> None:
    admin = {"Authorization": f"Bearer {live_server.admin_key}"}
    with httpx.Client(base_url=live_server.base_url, timeout=30, headers=admin) as http:
        for body in (
            b"",
            b"{}",
            b'{"name": ""}',
            b'{"name": "x", "role": "emperor"}',
            b'{"name": "x", "quota_tokens": -5}',
            b'{"name": "x", "rpm_limit": 0}',
            b'{"name": "x", "expires_in": "forever"}',
            b'{"name": "x", "unknown_field": 1}',
            b'{"name": "x", "unknown_field": ' + DEEP + b"}",
            b'{"name": "x", "allowed_models": ' + DEEP + b"}",
            b"\xff\xfe",
        ):
            response = http.post("/admin/keys", content=body)
            assert 400 <= response.status_code < 500, (body, response.text)
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        for params in ({"limit": "-1"}, {"limit": "100000"}, {"since": "yesterday"}):
            response = http.get("/admin/logs", params=params)
            assert response.status_code == 400, (params, response.text)
        assert http.get("/admin/usage", params={"period": "2026-13"}).status_code == 400
        assert http.get("/admin/keys/does-not-exist").status_code == 404


def test_server_keeps_serving_after_bad_input(
    client: httpx.Client, live_server: LiveServer
) -> None:
    response = client.post(CHAT, json=_chat(max_tokens=4))
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] >= 1
    assert '"unhandled_error"' not in live_server.logs()
