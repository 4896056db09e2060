"""``POST /v1/embeddings`` on the demo embedding model, against a live server: the openai
SDK's ``client.embeddings.create`` and raw HTTP for what the SDK hides (headers, base64)."""

from __future__ import annotations

import base64
import math
import struct
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from livesupport import LiveServer

MODEL = "demo-embed"
CHAT_MODEL = "demo-tiny-llama"
DIMENSIONS = 64

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sdk(live_server: LiveServer) -> Iterator[OpenAI]:
    """The openai SDK with the user key, closed at the end (an SDK client left to the
    garbage collector leaves its pooled sockets unclosed)."""
    with OpenAI(
        base_url=live_server.base_url + "/v1",
        api_key=live_server.user_key,
        max_retries=0,
        timeout=60,
    ) as client:
        yield client


def embed(live_server: LiveServer, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    return httpx.post(
        live_server.base_url + "/v1/embeddings",
        json=body,
        headers={"Authorization": f"Bearer {key or live_server.user_key}"},
        timeout=60,
    )


def text() -> str:
    return f"a sentence about {uuid.uuid4().hex}"


def norm(vector: list[float]) -> float:
    return math.sqrt(math.fsum(v * v for v in vector))


def test_float_embedding_in_openais_shape(live_server: LiveServer, sdk: OpenAI) -> None:
    reply = sdk.embeddings.create(
        model=MODEL, input=text(), encoding_format="float", user="someone"
    )
    assert reply.object == "list"
    assert reply.model == MODEL
    [item] = reply.data
    assert item.object == "embedding"
    assert item.index == 0
    assert len(item.embedding) == DIMENSIONS
    assert norm(item.embedding) == pytest.approx(1.0, abs=1e-5)
    assert reply.usage.prompt_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens


def test_base64_is_little_endian_float32_of_the_same_vector(
    live_server: LiveServer, sdk: OpenAI
) -> None:
    sentence = text()
    floats = embed(live_server, {"model": MODEL, "input": sentence}).json()
    packed = embed(
        # Computed again, not the float answer's cache entry re-encoded.
        live_server,
        {"model": MODEL, "input": sentence, "encoding_format": "base64", "cache": False},
    ).json()
    raw = base64.b64decode(packed["data"][0]["embedding"])
    assert list(struct.unpack(f"<{DIMENSIONS}f", raw)) == floats["data"][0]["embedding"]
    # The SDK asks for base64 when no format is given, and decodes it.
    decoded = sdk.embeddings.create(model=MODEL, input=sentence)
    assert decoded.data[0].embedding == floats["data"][0]["embedding"]


def test_a_batch_keeps_its_order_and_matches_single_requests(
    live_server: LiveServer, sdk: OpenAI
) -> None:
    texts = [text() for _ in range(5)]
    batch = sdk.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert [item.index for item in batch.data] == list(range(5))
    singles = [sdk.embeddings.create(model=MODEL, input=t, encoding_format="float") for t in texts]
    for item, single in zip(batch.data, singles, strict=True):
        assert item.embedding == pytest.approx(single.data[0].embedding, abs=1e-5)
    assert batch.usage.prompt_tokens == sum(s.usage.prompt_tokens for s in singles)


def test_token_arrays_embed_as_their_text(live_server: LiveServer, demo_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(demo_model_dir / "embedding")
    sentence = text()
    ids = tokenizer(sentence, add_special_tokens=False)["input_ids"]
    as_text = embed(live_server, {"model": MODEL, "input": sentence}).json()
    one = embed(live_server, {"model": MODEL, "input": ids})
    many = embed(live_server, {"model": MODEL, "input": [ids, [9]]})
    assert one.status_code == many.status_code == 200, (one.text, many.text)
    expected = as_text["data"][0]["embedding"]
    # Padded beside a shorter row, the same row's floats may differ in the last bits.
    assert one.json()["data"][0]["embedding"] == pytest.approx(expected, abs=1e-5)
    assert many.json()["data"][0]["embedding"] == pytest.approx(expected, abs=1e-5)
    assert one.json()["usage"]["prompt_tokens"] == as_text["usage"]["prompt_tokens"]
    outside = embed(live_server, {"model": MODEL, "input": [[5, 10**6]]})
    assert outside.status_code == 400
    assert "vocabulary" in outside.json()["error"]["message"]


def test_dimensions_truncate_and_renormalise(live_server: LiveServer, sdk: OpenAI) -> None:
    sentence = text()
    full = sdk.embeddings.create(model=MODEL, input=sentence, encoding_format="float")
    short = sdk.embeddings.create(
        model=MODEL, input=sentence, dimensions=16, encoding_format="float"
    )
    vector = short.data[0].embedding
    assert len(vector) == 16
    assert norm(vector) == pytest.approx(1.0, abs=1e-5)
    head = full.data[0].embedding[:16]
    assert vector == pytest.approx([v / norm(head) for v in head], abs=1e-5)
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.embeddings.create(model=MODEL, input=sentence, dimensions=65)
    assert refused.value.param == "dimensions"


def test_identical_inputs_hit_the_cache(live_server: LiveServer) -> None:
    body = {"model": MODEL, "input": [text(), text()], "dimensions": 32}
    first, second = embed(live_server, body), embed(live_server, body)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert first.json()["data"] == second.json()["data"]
    assert second.json()["usage"] == first.json()["usage"]
    # The cache keeps one form of the vectors: the other encoding is the same entry.
    other_encoding = embed(live_server, {**body, "encoding_format": "base64"})
    assert other_encoding.headers["x-cache"] == "HIT"
    packed = [base64.b64decode(item["embedding"]) for item in other_encoding.json()["data"]]
    unpacked = [list(struct.unpack("<32f", raw)) for raw in packed]
    assert unpacked == [item["embedding"] for item in first.json()["data"]]
    other_width = embed(live_server, {**body, "dimensions": 16})
    assert other_width.headers["x-cache"] == "MISS"
    bypass = embed(live_server, {**body, "cache": False})
    assert bypass.headers["x-cache"] == "BYPASS"


def test_the_wrong_kind_of_model_is_a_clear_400(live_server: LiveServer, sdk: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as on_chat:
        sdk.embeddings.create(model=CHAT_MODEL, input="hi")
    assert on_chat.value.code == "unsupported_model"
    assert "/v1/chat/completions" in on_chat.value.message
    with pytest.raises(openai.BadRequestError) as on_embed:
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert on_embed.value.code == "unsupported_model"
    assert "/v1/embeddings" in on_embed.value.message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": MODEL, "input": ""}, "input"),
        ({"model": MODEL, "input": []}, "input"),
        ({"model": MODEL, "input": ["a", 3]}, "input"),
        ({"model": MODEL, "input": "a", "encoding_format": "int8"}, "encoding_format"),
        ({"model": MODEL, "input": "a", "dimensions": 0}, "dimensions"),
        ({"model": MODEL}, "input"),
    ],
)
def test_bad_bodies_are_400_naming_the_field(
    live_server: LiveServer, body: dict[str, Any], param: str
) -> None:
    response = embed(live_server, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def test_models_report_their_capabilities(live_server: LiveServer, sdk: OpenAI) -> None:
    listed = sdk.models.list()
    capabilities = {m.id: m.model_extra["capabilities"] for m in listed.data if m.model_extra}
    assert capabilities == {CHAT_MODEL: ["chat", "completions"], MODEL: ["embeddings"]}


def _usage(live_server: LiveServer, key_id: str) -> dict[str, Any]:
    response = httpx.get(
        live_server.base_url + "/admin/usage",
        params={"key_id": key_id},
        headers={"Authorization": f"Bearer {live_server.admin_key}"},
    )
    [record] = response.json()["data"]
    return record  # type: ignore[no-any-return]


def _new_key(live_server: LiveServer, **limits: int) -> tuple[str, str]:
    created = httpx.post(
        live_server.base_url + "/admin/keys",
        json={"name": f"embeddings-{uuid.uuid4().hex[:8]}", **limits},
        headers={"Authorization": f"Bearer {live_server.admin_key}"},
    ).json()
    return created["key"], created["details"]["id"]


def _log_rows(live_server: LiveServer, key_id: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        rows: list[dict[str, Any]] = httpx.get(
            live_server.base_url + "/admin/logs",
            params={"key_id": key_id},
            headers={"Authorization": f"Bearer {live_server.admin_key}"},
        ).json()["data"]
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_quota_counts_prompt_tokens_and_every_request_is_logged(live_server: LiveServer) -> None:
    key, key_id = _new_key(live_server, quota_tokens=40, rpm_limit=3)
    first = embed(live_server, {"model": MODEL, "input": [5, 6, 7, 8, 9]}, key=key)
    assert first.status_code == 200, first.text
    assert first.headers["x-ratelimit-limit-requests"] == "3"
    assert first.headers["x-ratelimit-remaining-requests"] == "2"
    assert _usage(live_server, key_id)["used_tokens"] == 5
    too_many = embed(live_server, {"model": MODEL, "input": [[7] * 30, [8] * 30]}, key=key)
    assert too_many.status_code == 429
    assert too_many.json()["error"]["code"] == "insufficient_quota"
    assert embed(live_server, {"model": MODEL, "input": [5]}, key=key).status_code == 200
    limited = embed(live_server, {"model": MODEL, "input": [5]}, key=key)
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert _usage(live_server, key_id)["used_tokens"] == 6
    rows = _log_rows(live_server, key_id, 4)
    assert [(r["route"], r["status"], r["prompt_tokens"]) for r in reversed(rows)] == [
        ("/v1/embeddings", 200, 5),
        ("/v1/embeddings", 429, 0),
        ("/v1/embeddings", 200, 1),
        ("/v1/embeddings", 429, 0),
    ]


def _counter(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(f'{name}{{model="{MODEL}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_concurrent_requests_share_forward_passes(live_server: LiveServer) -> None:
    def metrics() -> str:
        return httpx.get(
            live_server.base_url + "/metrics",
            headers={"Authorization": f"Bearer {live_server.admin_key}"},
        ).text

    before = metrics()
    # Long inputs, so that a pass takes long enough for the next requests to queue.
    bodies = [{"model": MODEL, "input": " ".join([text()] * 12), "cache": False} for _ in range(24)]
    headers = {"Authorization": f"Bearer {live_server.user_key}"}
    with (
        httpx.Client(base_url=live_server.base_url, headers=headers, timeout=60) as http,
        ThreadPoolExecutor(max_workers=24) as pool,
    ):
        replies = list(pool.map(lambda body: http.post("/v1/embeddings", json=body), bodies))
    assert [r.status_code for r in replies] == [200] * 24, replies[0].text
    after = metrics()
    inputs = _counter(after, "llmserver_embedding_inputs_total") - _counter(
        before, "llmserver_embedding_inputs_total"
    )
    passes = _counter(after, "llmserver_embedding_forward_passes_total") - _counter(
        before, "llmserver_embedding_forward_passes_total"
    )
    assert inputs == 24
    assert 1 <= passes < inputs
