"""A key's monthly token quota on one model, on a live server through the admin API and the
openai SDK: a quota of 1 token on the chat model refuses it (a RateLimitError naming the
model, the tokens left and the reset) while the embedding model still answers; raised, it
admits the next request, and GET /admin/model-quotas counts what that one used."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from openai import OpenAI

from livesupport import LiveServer, closed_after_test
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
    client = closed_after_test(
        OpenAI(base_url=live_server.base_url + "/v1", api_key=secret, max_retries=0, timeout=60)
    )

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
