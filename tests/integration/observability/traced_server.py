"""A live server that exports its traces to a receiver in the test (shared by the tracing
tests)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from integration.observability.otlp_receiver import (
    EchoUpstream,
    OtlpReceiver,
    ReceivedSpan,
    echo_upstream,
    otlp_receiver,
)
from livesupport import LiveServer, running_server

MODEL = "demo-tiny-llama"
ECHO = "echo"
UPSTREAM_SECRET = "upstream-secret-" + "u" * 24
STATUS_UNSET = 0  # neither failed nor marked ok
STATUS_ERROR = 2
INTERNAL = ProtoSpan.SpanKind.SPAN_KIND_INTERNAL
CLIENT = ProtoSpan.SpanKind.SPAN_KIND_CLIENT


class Traced:
    def __init__(self, server: LiveServer, receiver: OtlpReceiver, upstream: EchoUpstream) -> None:
        self.server = server
        self.receiver = receiver
        self.upstream = upstream

    def post(
        self, body: dict[str, Any], *, headers: dict[str, str] | None = None, status: int = 200
    ) -> tuple[str, httpx.Response]:
        """The request's id and its answer (a stream read to its end), which must have
        ``status``."""
        request_id = uuid.uuid4().hex
        response = httpx.post(
            self.server.base_url + "/v1/chat/completions",
            json=body,
            headers={
                "Authorization": f"Bearer {self.server.user_key}",
                "X-Request-ID": request_id,
                **(headers or {}),
            },
            timeout=60,
        )
        assert response.status_code == status, response.text
        return request_id, response


@contextmanager
def traced_server(root: Path, demo_model_dir: Path) -> Iterator[Traced]:
    """The demo model and an ``http`` model (``ECHO``) on the test's echo upstream, exporting
    to a receiver of the test's own."""
    with otlp_receiver() as receiver, echo_upstream() as upstream:
        models = root / "models.toml"
        models.write_text(
            "[[models]]\n"
            f'id = "{ECHO}"\n'
            'backend = "http"\n'
            f'source = "{upstream.url}"\n'
            'api_key_env = "UPSTREAM_KEY"\n'
            "context_length = 512\n"
        )
        with running_server(
            root,
            demo_model_dir,
            LLMSERVER_OTEL_ENDPOINT=receiver.url,
            LLMSERVER_MODELS_FILE=str(models),
            UPSTREAM_KEY=UPSTREAM_SECRET,
            OTEL_BSP_SCHEDULE_DELAY="50",
        ) as server:
            yield Traced(server, receiver, upstream)


def chat(model: str, content: str, **options: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **options}


def root_of(spans: list[ReceivedSpan]) -> ReceivedSpan:
    (root,) = [s for s in spans if s.parent_id == "" or s.is_server]
    assert root.is_server
    assert root.parent_id == ""
    return root


def children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return [s for s in spans if s.parent_id == parent.span_id]


def named(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    (span,) = [s for s in spans if s.name == name]
    return span


def wait_for(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
