"""Fixtures for the reliability tests: replicas on shared Postgres + Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from integration.reliability.faultkit import Upstream, http_models_file
from integration.reliability.replicakit import PRICE, PRICED, Replicas, running_replicas


@pytest.fixture(scope="module")
def http_replicas(
    postgres_url: str, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    """Three server processes in replicas mode on one Postgres database and one Redis
    database, serving only the upstream's http models (``http_models_file``) and ``PRICED``
    (its ``fast`` answers at a price): no model to load, so they start in seconds."""
    root = tmp_path_factory.mktemp("replicas")
    models = http_models_file(root / "models.toml", upstream)
    price = f'input_price_per_mtok = "{PRICE}"\noutput_price_per_mtok = "{PRICE}"\n'
    models.write_text(
        models.read_text()
        + f'\n[[models]]\nid = "{PRICED}"\nbackend = "http"\nsource = "{upstream.url}"\n'
        f'upstream_model = "fast"\ncontext_length = 4096\n{price}'
    )
    with running_replicas(
        postgres_url,
        root / "no-demo-model",
        root,
        LLMSERVER_PROFILE="none",
        LLMSERVER_MODELS_FILE=str(models),
    ) as replicas:
        yield replicas


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    """The loopback OpenAI-compatible upstream the http models talk to."""
    server = Upstream()
    server.start()
    yield server
    server.stop()
