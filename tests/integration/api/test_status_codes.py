"""Every status code the API promises, in OpenAI's error shape, against a live server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from livesupport import LiveServer

MODEL = "demo-tiny-llama"


def post(
    live_server: LiveServer, body: Any, key: str | None = None, **kwargs: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key or live_server.user_key}"}
    headers.update(kwargs.pop("headers", {}))
    if isinstance(body, bytes):
        return httpx.post(
            live_server.base_url + "/v1/chat/completions",
            content=body,
            headers={**headers, "Content-Type": "application/json"},
            timeout=60,
        )
    return httpx.post(
        live_server.base_url + "/v1/chat/completions", json=body, headers=headers, timeout=60
    )


def chat(content: str = "hello", **params: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **params}


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]


def test_200_with_usage_and_headers(live_server: LiveServer) -> None:
    response = post(live_server, chat(uuid.uuid4().hex, max_tokens=4))
    assert response.status_code == 200
    assert response.json()["usage"]["total_tokens"] > 0
    assert response.headers["x-cache"] in {"MISS", "BYPASS"}
    assert response.headers["x-ratelimit-limit-requests"] == "600"
    assert int(response.headers["x-ratelimit-remaining-requests"]) < 600
    assert response.headers["x-ratelimit-reset-requests"].endswith("s")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat(max_tokens="ten"), "max_tokens"),
        (chat(max_tokens=-1), "max_tokens"),
        (chat(max_tokens=0), "max_tokens"),
        (chat(temperature=7), "temperature"),
        (chat(top_p=0), "top_p"),
        (chat(n=5), "n"),
        (chat(stop=["a", "b", "c", "d", "e"]), "stop"),
        ({"model": MODEL}, "messages"),
        ({"model": MODEL, "messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        (
            {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content",
        ),
    ],
)
def test_400_names_the_field(live_server: LiveServer, body: dict[str, Any], param: str) -> None:
    response = post(live_server, body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


@pytest.mark.parametrize(
    "raw",
    [b"", b"{not json", b"\xff\xfe\x00garbage", b"[" * 50_000 + b"]" * 50_000, b'"just a string"'],
)
def test_400_for_unparseable_bodies(live_server: LiveServer, raw: bytes) -> None:
    response = post(live_server, raw)
    assert response.status_code == 400
    assert error_of(response)["type"] == "invalid_request_error"


def test_unknown_fields_are_ignored(live_server: LiveServer) -> None:
    response = post(live_server, chat(max_tokens=2, logit_bias={"1": 2}, frobnicate=True))
    assert response.status_code == 200


def test_400_context_too_long(live_server: LiveServer) -> None:
    response = post(live_server, chat("word " * 2000, max_tokens=8))
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "context_length_exceeded"
    assert "maximum context length is 512" in error["message"]
    huge = post(live_server, chat("hi", max_tokens=10**9))
    assert error_of(huge)["code"] == "context_length_exceeded"


@pytest.mark.parametrize(
    ("key", "code"),
    [
        (None, "missing_api_key"),
        ("not-a-key", "malformed_api_key"),
        ("llms_abcdefghijkl_" + "A" * 43, "invalid_api_key"),
    ],
)
def test_401_says_why(live_server: LiveServer, key: str | None, code: str) -> None:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    response = httpx.post(
        live_server.base_url + "/v1/chat/completions", json=chat(), headers=headers
    )
    assert response.status_code == 401
    assert error_of(response)["code"] == code


def test_401_for_revoked_and_expired_keys(live_server: LiveServer) -> None:
    revoked = post(live_server, chat(), key=live_server.keys.revoked)
    assert revoked.status_code == 401
    assert error_of(revoked)["code"] == "revoked_api_key"
    admin = {"Authorization": f"Bearer {live_server.admin_key}"}
    created = httpx.post(
        live_server.base_url + "/admin/keys",
        json={"name": "short-lived", "expires_in": "1s"},
        headers=admin,
    ).json()
    import time

    time.sleep(1.2)
    expired = post(live_server, chat(), key=created["key"])
    assert expired.status_code == 401
    assert error_of(expired)["code"] == "expired_api_key"


def test_x_api_key_header_works(live_server: LiveServer) -> None:
    response = httpx.get(
        live_server.base_url + "/v1/models", headers={"X-API-Key": live_server.user_key}
    )
    assert response.status_code == 200


def test_403_for_model_not_allowed_and_admin_routes(live_server: LiveServer) -> None:
    admin = {"Authorization": f"Bearer {live_server.admin_key}"}
    limited = httpx.post(
        live_server.base_url + "/admin/keys",
        json={
            "name": "limited",
            "allowed_models": ["some-other-model"],
            "allow_unknown_models": True,
        },
        headers=admin,
    ).json()["key"]
    refused = post(live_server, chat(), key=limited)
    assert refused.status_code == 403
    assert error_of(refused)["code"] == "model_not_allowed"
    models = httpx.get(
        live_server.base_url + "/v1/models", headers={"Authorization": f"Bearer {limited}"}
    ).json()
    assert models["data"] == []
    for key in (live_server.user_key, live_server.playground_key):
        response = httpx.get(
            live_server.base_url + "/admin/keys", headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 403
        assert error_of(response)["type"] == "permission_error"


def test_404_for_unknown_model_and_route(live_server: LiveServer) -> None:
    unknown = post(live_server, chat() | {"model": "gpt-17"})
    assert unknown.status_code == 404
    assert error_of(unknown)["code"] == "model_not_found"
    assert error_of(unknown)["param"] == "model"
    route = httpx.get(live_server.base_url + "/v1/nothing-here")
    assert route.status_code == 404
    assert error_of(route)["type"] == "not_found_error"


def test_413_for_oversize_body(live_server: LiveServer) -> None:
    response = post(live_server, chat("x" * 1_100_000))
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"


def test_413_for_an_oversize_body_sent_in_chunks_without_a_length(live_server: LiveServer) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(20):
            yield b"x" * 64_000  # 1.28 MB in all, no Content-Length announced

    response = httpx.post(
        live_server.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {live_server.user_key}"},
        content=chunks(),
        timeout=30,
    )
    assert response.status_code == 413
    assert error_of(response)["code"] == "request_too_large"


def test_429_quota_exhausted_says_what_is_left_and_when(live_server: LiveServer) -> None:
    admin = {"Authorization": f"Bearer {live_server.admin_key}"}
    key = httpx.post(
        live_server.base_url + "/admin/keys",
        json={"name": "tiny-quota", "quota_tokens": 60},
        headers=admin,
    ).json()["key"]
    first = post(live_server, chat(uuid.uuid4().hex, max_tokens=8, temperature=0.5), key=key)
    assert first.status_code == 200
    refused = post(live_server, chat(uuid.uuid4().hex, max_tokens=60), key=key)
    assert refused.status_code == 429
    error = error_of(refused)
    assert error["code"] == "insufficient_quota"
    assert error["type"] == "insufficient_quota"
    left = 60 - first.json()["usage"]["total_tokens"]
    assert f"{left} of 60 are left" in error["message"]
    assert refused.headers["x-quota-remaining-tokens"] == str(left)
    assert refused.headers["x-quota-reset"].endswith("+00:00")


def test_405_for_wrong_method(live_server: LiveServer) -> None:
    response = httpx.get(
        live_server.base_url + "/v1/chat/completions",
        headers={"Authorization": f"Bearer {live_server.user_key}"},
    )
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


def test_admin_log_paging_refuses_offsets_beyond_any_database(live_server: LiveServer) -> None:
    response = httpx.get(
        live_server.base_url + "/admin/logs",
        params={"offset": 12416073571845412864},
        headers={"Authorization": f"Bearer {live_server.admin_key}"},
    )
    assert response.status_code == 400
    assert error_of(response)["type"] == "invalid_request_error"


@pytest.mark.parametrize("field", ["quota_tokens", "rpm_limit"])
def test_admin_key_limits_beyond_any_database_are_400(live_server: LiveServer, field: str) -> None:
    response = httpx.post(
        live_server.base_url + "/admin/keys",
        json={"name": "huge", field: 2**70},
        headers={"Authorization": f"Bearer {live_server.admin_key}"},
    )
    assert response.status_code == 400
    assert error_of(response)["param"] == field


def test_an_alias_is_answered_and_cached_under_the_model_id(live_server: LiveServer) -> None:
    """README, Models: ``demo`` is the demo model's alias; ``/v1/models`` lists ids only."""
    prompt = uuid.uuid4().hex
    by_alias = post(live_server, {**chat(prompt, max_tokens=4, temperature=0), "model": "demo"})
    assert by_alias.status_code == 200, by_alias.text
    assert by_alias.json()["model"] == MODEL
    by_id = post(live_server, chat(prompt, max_tokens=4, temperature=0))
    assert by_id.headers["x-cache"] == "HIT"
    listed = httpx.get(
        live_server.base_url + "/v1/models",
        headers={"Authorization": f"Bearer {live_server.user_key}"},
    ).json()
    assert [m["id"] for m in listed["data"]] == [MODEL, "demo-embed"]
