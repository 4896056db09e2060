"""A key's own limits on one model, on a live server through the admin API and the openai
SDK: a key with 1 RPM on the chat model and no limit on the embedding model is refused its
second chat (a RateLimitError naming the model) while the other model still answers;
edits take effect at once, are audited, and bad ones are 400s naming ``model_limits``.
A key's monthly token quota on one model: a quota of 1 token on the chat model refuses it
(a RateLimitError naming the model, the tokens left and the reset) while the embedding
model still answers; raised, it admits the next request, and GET /admin/model-quotas counts
what that one used."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from livesupport import LiveServer, openai_client
from llmserver.domain.registry import DEMO_MODEL_ID

EMBED_MODEL = "demo-embed"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def http(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=live_server.base_url,
        headers={"Authorization": f"Bearer {live_server.admin_key}"},
        timeout=60,
    ) as client:
        yield client


def sdk(live_server: LiveServer, key: str) -> OpenAI:
    return openai_client(live_server, key)


def chat(client: OpenAI, content: str) -> Any:
    return client.chat.completions.with_raw_response.create(
        model=DEMO_MODEL_ID,
        messages=[{"role": "user", "content": content}],
        max_tokens=2,
        temperature=0,
    )


def test_one_rpm_on_one_model_leaves_the_other_model_answering(
    live_server: LiveServer, http: httpx.Client
) -> None:
    created = http.post(
        "/admin/keys",
        json={
            "name": "per-model",
            "rpm_limit": 1000,
            "model_limits": {"demo": {"rpm_limit": 1}},  # an alias, stored as the id
        },
    )
    assert created.status_code == 201, created.text
    secret, key = created.json()["key"], created.json()["details"]
    assert key["model_limits"] == [
        {"model_id": DEMO_MODEL_ID, "rpm_limit": 1, "tpm_limit": None, "quota_tokens": None}
    ]
    client = sdk(live_server, secret)

    first = chat(client, "per-model one")
    assert first.headers["x-ratelimit-limit-requests"] == "1"
    with pytest.raises(openai.RateLimitError, match=f"on model {DEMO_MODEL_ID}"):
        chat(client, "per-model two")
    for n in range(3):
        reply = client.embeddings.create(model=EMBED_MODEL, input=f"still answering {n}")
        assert len(reply.data) == 1

    # Removing the model's limit applies to the next request; the edit is audited.
    edited = http.patch(f"/admin/keys/{key['id']}", json={"model_limits": {DEMO_MODEL_ID: None}})
    assert edited.status_code == 200, edited.text
    assert edited.json()["model_limits"] == []
    assert chat(client, "per-model three").headers["x-ratelimit-limit-requests"] == "1000"
    audit = http.get("/admin/audit", params={"action": "key.update", "target": key["id"]})
    (entry,) = audit.json()["data"]
    assert entry["before"]["model_limits"] == {
        DEMO_MODEL_ID: {"rpm_limit": 1, "tpm_limit": None, "quota_tokens": None}
    }
    assert entry["after"]["model_limits"] == {}


@pytest.mark.parametrize(
    ("model_limits", "words"),
    [
        ({"no-such-model": {"rpm_limit": 1}}, "Unknown model 'no-such-model' in model_limits"),
        ({DEMO_MODEL_ID: {"rpm_limit": 0}}, "rpm_limit"),
        ({DEMO_MODEL_ID: {"rpm": 5}}, "rpm"),
        ({DEMO_MODEL_ID: {"tpm_limit": "many"}}, "tpm_limit"),
        ({DEMO_MODEL_ID: {"quota_tokens": -1}}, "quota_tokens"),
        ({"": {"rpm_limit": 1}}, "model_limits"),
    ],
)
def test_a_bad_model_limit_is_a_400_naming_it(
    http: httpx.Client, model_limits: dict[str, Any], words: str
) -> None:
    key = http.post("/admin/keys", json={"name": "bad model limits"}).json()["details"]

    created = http.post("/admin/keys", json={"name": "bad", "model_limits": model_limits})
    edited = http.patch(f"/admin/keys/{key['id']}", json={"model_limits": model_limits})

    for answer in (created, edited):
        assert answer.status_code == 400, answer.text
        assert words in answer.json()["error"]["message"]
        assert "model_limits" in answer.text


def test_a_model_quota_refuses_that_model_and_not_another(
    live_server: LiveServer, http: httpx.Client
) -> None:
    created = http.post(
        "/admin/keys",
        json={"name": "model quota", "model_limits": {"demo": {"quota_tokens": 1}}},
    )
    assert created.status_code == 201, created.text
    secret, key = created.json()["key"], created.json()["details"]
    assert key["model_limits"] == [
        {"model_id": DEMO_MODEL_ID, "rpm_limit": None, "tpm_limit": None, "quota_tokens": 1}
    ]
    client = sdk(live_server, secret)

    def chat() -> openai.types.chat.ChatCompletion:
        return client.chat.completions.create(
            model=DEMO_MODEL_ID,
            messages=[{"role": "user", "content": "model quota"}],
            max_tokens=2,
            temperature=0,
        )

    with pytest.raises(openai.RateLimitError) as refused:
        chat()
    message = refused.value.body["message"]  # type: ignore[index]
    assert f"Monthly token quota on model {DEMO_MODEL_ID} exceeded" in message
    assert "but 1 of 1 are left. The quota resets at " in message
    assert refused.value.code == "insufficient_quota"
    assert len(client.embeddings.create(model=EMBED_MODEL, input="other model").data) == 1
    # The refusal held nothing of the key's own quota and counted nothing on the model.
    usage = http.get("/admin/usage", params={"key_id": key["id"]}).json()["data"]
    assert [(row["reserved_tokens"], row["requests"]) for row in usage] == [(0, 1)]

    raised = http.patch(
        f"/admin/keys/{key['id']}", json={"model_limits": {DEMO_MODEL_ID: {"quota_tokens": 10**6}}}
    )
    assert raised.status_code == 200, raised.text
    answer = chat()
    assert answer.usage is not None

    quotas = http.get("/admin/model-quotas", params={"key_id": key["id"]})
    assert quotas.status_code == 200, quotas.text
    (status,) = quotas.json()["data"]
    assert status["model_id"] == DEMO_MODEL_ID
    assert (status["quota_tokens"], status["used_tokens"]) == (10**6, answer.usage.total_tokens)
    assert status["remaining_tokens"] == 10**6 - answer.usage.total_tokens
    assert status["reserved_tokens"] == 0
    assert status["resets_at"].endswith("T00:00:00Z")
