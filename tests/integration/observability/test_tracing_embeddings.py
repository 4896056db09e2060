"""An embedding request's trace: the model's call is an ``embeddings`` inference span, as
the GenAI conventions name it, under the request's root span."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from integration.observability.otlp_receiver import OtlpReceiver, otlp_receiver
from livesupport import LiveServer, running_server

pytestmark = pytest.mark.slow

MODEL = "demo-embed"


@pytest.fixture(scope="module")
def traced(
    tmp_path_factory: pytest.TempPathFactory, demo_model_dir: Path
) -> Iterator[tuple[LiveServer, OtlpReceiver]]:
    with (
        otlp_receiver() as receiver,
        running_server(
            tmp_path_factory.mktemp("traced-embeddings"),
            demo_model_dir,
            LLMSERVER_OTEL_ENDPOINT=receiver.url,
            OTEL_BSP_SCHEDULE_DELAY="50",
        ) as server,
    ):
        yield server, receiver


def test_an_embedding_is_an_embeddings_span_under_the_request(
    traced: tuple[LiveServer, OtlpReceiver],
) -> None:
    server, receiver = traced
    request_id = uuid.uuid4().hex
    response = httpx.post(
        server.base_url + "/v1/embeddings",
        json={"model": MODEL, "input": [f"trace {request_id}", "and me"]},
        headers={"Authorization": f"Bearer {server.user_key}", "X-Request-ID": request_id},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    spans = receiver.trace(request_id)
    (root,) = [s for s in spans if s.is_server]
    assert root.name == "POST /v1/embeddings"
    (inference,) = [s for s in spans if s.name == f"embeddings {MODEL}"]
    assert inference.parent_id == root.span_id
    assert inference.kind == ProtoSpan.SpanKind.SPAN_KIND_INTERNAL  # a model in this process
    assert inference.attributes["gen_ai.operation.name"] == "embeddings"
    assert inference.attributes["gen_ai.provider.name"] == "llmserver.torch"
    assert inference.attributes["gen_ai.request.model"] == MODEL
    assert inference.attributes["gen_ai.usage.input_tokens"] == answer["usage"]["prompt_tokens"]
    dimensions = len(answer["data"][0]["embedding"])
    assert inference.attributes["gen_ai.embeddings.dimension.count"] == dimensions
