"""The completion routes answer alike through the completion lane and through Litestar.

Two live servers: one as deployed by default (the lane takes the completion POSTs) and one
with CORS configured (the lane stands aside and Litestar routes them, through its CORS and
exception middleware). Each case sends the same request to both and compares what a client
sees: the status, the body (ids and timestamps aside), and every header but the ones that
differ by nature (date, request id, CORS, the rate limit's countdown).
"""

from __future__ import annotations

import json
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from livesupport import LiveServer, running_server
from llmserver.domain.keys import parse_prefix

MODEL = "demo-tiny-llama"
ORIGIN = "http://parity.test"
MAX_BODY_BYTES = 4096
BODY_READ_TIMEOUT_S = 1.0

_VARYING = {
    "date",
    "server",
    "x-request-id",
    "vary",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-quota-reset",
    "retry-after-ms",
}
_PER_ANSWER = {"id", "created", "created_at", "item_id"}


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory, demo_model_dir: Path
) -> Iterator[dict[str, LiveServer]]:
    env = {
        "LLMSERVER_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "LLMSERVER_BODY_READ_TIMEOUT_S": str(BODY_READ_TIMEOUT_S),
    }
    with (
        running_server(tmp_path_factory.mktemp("lane"), demo_model_dir, **env) as lane,
        running_server(
            tmp_path_factory.mktemp("litestar"),
            demo_model_dir,
            LLMSERVER_CORS_ORIGINS=ORIGIN,
            **env,
        ) as routed,
    ):
        yield {"lane": lane, "litestar": routed}


def _key(server: LiveServer, **fields: Any) -> str:
    """A new key with ``fields`` (made through the admin API)."""
    response = httpx.post(
        server.base_url + "/admin/keys",
        json={"name": f"parity-{uuid.uuid4().hex[:8]}", **fields},
        headers={"Authorization": f"Bearer {server.admin_key}"},
    )
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


Request = Callable[[LiveServer], httpx.Response]


def _post(
    path: str, body: Any, *, key: Callable[[LiveServer], str | None] | None = None
) -> Request:
    def send(server: LiveServer) -> httpx.Response:
        presented = key(server) if key is not None else server.user_key
        headers = {"Origin": ORIGIN, "Content-Type": "application/json"}
        if presented is not None:
            headers["Authorization"] = f"Bearer {presented}"
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.post(server.base_url + path, content=content, headers=headers, timeout=60)

    return send


def _get(path: str) -> Request:
    def send(server: LiveServer) -> httpx.Response:
        headers = {"Origin": ORIGIN, "Authorization": f"Bearer {server.user_key}"}
        return httpx.get(server.base_url + path, headers=headers, timeout=60)

    return send


def _chat(content: str, **params: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 4,
        "temperature": 0,
        **params,
    }


def _text(prompt: str, **params: Any) -> dict[str, Any]:
    return {"model": MODEL, "prompt": prompt, "max_tokens": 4, "temperature": 0, **params}


def _message(content: str, **params: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 4,
        "temperature": 0,
        **params,
    }


def _response(text: str, **params: Any) -> dict[str, Any]:
    return {"model": MODEL, "input": text, "max_output_tokens": 4, "temperature": 0, **params}


def _seen(response: httpx.Response) -> dict[str, Any]:
    """What a client sees, less what differs between any two answers."""
    headers = {
        k: v
        for k, v in response.headers.items()
        if k not in _VARYING and not k.startswith("access-control-")
    }
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        body: Any = [_event(line) for line in response.text.split("\n\n") if line.strip()]
    else:
        body = _strip(response.json())
        headers.pop("content-length", None)  # the answers' ids differ in length (none here)
    if "allow" in headers:  # Litestar lists a route's methods from a set, in any order
        headers["allow"] = ", ".join(sorted(headers["allow"].split(", ")))
    if "retry-after" in headers:
        # A countdown, taken a moment apart on each server: only a whole second from now on.
        headers["retry-after"] = "whole seconds" if int(headers["retry-after"]) >= 1 else "0"
    return {"status": response.status_code, "headers": headers, "body": body}


def _event(block: str) -> Any:
    """A server-sent event's data (and its name, for the APIs that name them)."""
    name, _, data = block.rpartition("data: ")
    if data == "[DONE]":
        return data
    return [name.strip(), _strip(json.loads(data))] if name else _strip(json.loads(data))


_SECONDS = re.compile(r"\d+(\.\d+)?s\b")


def _strip(body: Any) -> Any:
    """``body`` less its per-answer fields; a wait in seconds ("Try again in 59.562s") is
    a countdown, so only its presence counts."""
    if isinstance(body, dict):
        return {k: _strip(v) for k, v in body.items() if k not in _PER_ANSWER}
    if isinstance(body, list):
        return [_strip(item) for item in body]
    if isinstance(body, str):
        return _SECONDS.sub("<n>s", body)
    return body


def _both(servers: dict[str, LiveServer], request: Request) -> dict[str, Any]:
    seen = {name: _seen(request(server)) for name, server in servers.items()}
    assert seen["lane"] == seen["litestar"]
    return seen["lane"]


def test_the_two_servers_take_the_two_paths(servers: dict[str, LiveServer]) -> None:
    """Litestar's CORS middleware marks its answers: only the second server's carry it."""
    request = _post("/v1/chat/completions", _chat("which path?"))
    lane, routed = request(servers["lane"]), request(servers["litestar"])
    assert (lane.status_code, routed.status_code) == (200, 200)
    assert "access-control-allow-origin" not in lane.headers
    assert routed.headers["access-control-allow-origin"] == ORIGIN


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", _chat("parity answer")),
        ("/v1/completions", _text("parity answer")),
        ("/v1/messages", _message("parity message")),
        ("/v1/responses", _response("parity response")),
    ],
    ids=["chat", "text", "messages", "responses"],
)
def test_an_answer_then_its_cache_hit(
    servers: dict[str, LiveServer], path: str, body: dict[str, Any]
) -> None:
    first = _both(servers, _post(path, body))
    again = _both(servers, _post(path, body))
    assert (first["status"], first["headers"]["x-cache"]) == (200, "MISS")
    assert (again["status"], again["headers"]["x-cache"]) == (200, "HIT")
    assert again["body"] == first["body"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", _chat("parity stream", stream=True)),
        (
            "/v1/completions",
            _text("parity stream", stream=True, stream_options={"include_usage": True}),
        ),
        ("/v1/messages", _message("parity message stream", stream=True)),
        ("/v1/responses", _response("parity response stream", stream=True)),
    ],
    ids=["chat", "text", "messages", "responses"],
)
def test_a_stream(servers: dict[str, LiveServer], path: str, body: dict[str, Any]) -> None:
    seen = _both(servers, _post(path, body))
    assert seen["status"] == 200
    assert seen["headers"]["content-type"] == "text/event-stream; charset=utf-8"
    last = {
        "/v1/messages": ["event: message_stop", {"type": "message_stop"}],
        "/v1/responses": "event: response.incomplete",
    }.get(path, "[DONE]")
    assert seen["body"][-1] == last or seen["body"][-1][0] == last


ERROR_CASES: dict[str, tuple[int, Request]] = {
    "400 not json": (400, _post("/v1/chat/completions", b"{not json")),
    "400 names the field": (400, _post("/v1/chat/completions", _chat("x", max_tokens="ten"))),
    "400 empty prompt": (400, _post("/v1/completions", _text(""))),
    "401 no key": (401, _post("/v1/chat/completions", _chat("x"), key=lambda s: None)),
    "401 revoked": (401, _post("/v1/chat/completions", _chat("x"), key=lambda s: s.keys.revoked)),
    "403 model not allowed": (
        403,
        _post(
            "/v1/chat/completions",
            _chat("x"),
            key=lambda s: _key(s, allowed_models=["other"], allow_unknown_models=True),
        ),
    ),
    "404 unknown model": (404, _post("/v1/completions", _text("x", model="no-such-model"))),
    "413 too large": (413, _post("/v1/chat/completions", _chat("x" * MAX_BODY_BYTES))),
    "429 quota": (
        429,
        _post("/v1/chat/completions", _chat("x"), key=lambda s: _key(s, quota_tokens=0)),
    ),
}


@pytest.mark.parametrize("case", ERROR_CASES)
def test_an_error(servers: dict[str, LiveServer], case: str) -> None:
    status, request = ERROR_CASES[case]
    seen = _both(servers, request)
    assert seen["status"] == status, seen
    assert set(seen["body"]["error"]) == {"message", "type", "param", "code"}


MESSAGES_ERROR_CASES: dict[str, tuple[int, str, Request]] = {
    "400 not json": (400, "invalid_request_error", _post("/v1/messages", b"{not json")),
    "400 no max_tokens": (
        400,
        "invalid_request_error",
        _post("/v1/messages", {"model": MODEL, "messages": [{"role": "user", "content": "x"}]}),
    ),
    "401 no key": (
        401,
        "authentication_error",
        _post("/v1/messages", _message("x"), key=lambda s: None),
    ),
    "404 unknown model": (
        404,
        "not_found_error",
        _post("/v1/messages", _message("x", model="no-such-model")),
    ),
    "413 too large": (413, "request_too_large", _post("/v1/messages", _message("x" * 4096))),
    "429 quota": (
        429,
        "rate_limit_error",
        _post("/v1/messages", _message("x"), key=lambda s: _key(s, quota_tokens=0)),
    ),
    # Refused before any handler runs (Litestar's router): still the Messages API's shape.
    "404 no such route": (404, "not_found_error", _post("/v1/messages/batches", _message("x"))),
    "405 GET messages": (405, "invalid_request_error", _get("/v1/messages")),
    "405 GET count_tokens": (405, "invalid_request_error", _get("/v1/messages/count_tokens")),
}


@pytest.mark.parametrize("case", MESSAGES_ERROR_CASES)
def test_a_messages_error_in_anthropics_shape(servers: dict[str, LiveServer], case: str) -> None:
    status, kind, request = MESSAGES_ERROR_CASES[case]
    seen = _both(servers, request)
    assert seen["status"] == status, seen
    assert seen["body"]["type"] == "error"
    assert seen["body"]["error"]["type"] == kind
    assert seen["body"]["error"]["message"]


def test_429_rate_limited(servers: dict[str, LiveServer]) -> None:
    """The second request of a 1-per-minute key, with the same Retry-After on both paths."""
    keys = {name: _key(server, rpm_limit=1) for name, server in servers.items()}
    request = _post("/v1/chat/completions", _chat("limited"), key=lambda s: keys[_name(s)])
    _both(servers, request)
    seen = _both(servers, request)
    assert seen["status"] == 429
    assert seen["headers"]["x-ratelimit-limit-requests"] == "1"
    assert seen["headers"]["retry-after"] == "whole seconds"


def _name(server: LiveServer) -> str:
    return "lane" if "LLMSERVER_CORS_ORIGINS" not in server.env else "litestar"


def _silent_body(server: LiveServer) -> tuple[int, str]:
    """Headers that announce a body, then nothing: the status line and body of the answer."""
    port = int(server.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=BODY_READ_TIMEOUT_S + 10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: parity\r\n"
            b"Authorization: Bearer " + server.user_key.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        )
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body.decode()


def test_408_a_body_that_does_not_come(servers: dict[str, LiveServer]) -> None:
    lane, routed = (_silent_body(server) for server in servers.values())
    assert lane == routed
    assert lane[0] == 408
    assert json.loads(lane[1])["error"]["code"] == "request_timeout"


def test_405_another_method(servers: dict[str, LiveServer]) -> None:
    def get(server: LiveServer) -> httpx.Response:
        return httpx.get(
            server.base_url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {server.user_key}"},
        )

    seen = _both(servers, get)
    assert seen["status"] == 405
    assert seen["headers"]["allow"] == "POST"


def test_the_access_lines_match(servers: dict[str, LiveServer]) -> None:
    """The access record is filled in alike on both paths."""
    request_id = uuid.uuid4().hex
    for server in servers.values():
        httpx.post(
            server.base_url + "/v1/chat/completions",
            json=_chat("logged", stream=True),
            headers={"Authorization": f"Bearer {server.user_key}", "X-Request-ID": request_id},
        )

    def line(server: LiveServer) -> dict[str, Any]:
        for text in reversed(server.logs().splitlines()):
            if request_id in text and text.startswith("{"):
                fields: dict[str, Any] = json.loads(text)
                assert fields["key_prefix"] == parse_prefix(server.user_key)
                varying = {"timestamp", "latency_ms", "key_prefix"}
                return {k: v for k, v in fields.items() if k not in varying}
        raise AssertionError(f"no access line for {request_id}")

    lane, routed = (_wait_for(line, server) for server in servers.values())
    assert lane == routed
    assert lane["status"] == 200
    assert lane["completion_tokens"] is not None


def _wait_for(read: Callable[[LiveServer], dict[str, Any]], server: LiveServer) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        try:
            return read(server)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
