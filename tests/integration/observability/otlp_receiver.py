"""Test servers for tracing: an OTLP/HTTP trace receiver and an OpenAI-compatible upstream.

The receiver decodes what the exporter sends with OpenTelemetry's own protobuf classes
(``opentelemetry-proto``'s ``ExportTraceServiceRequest``), so a test sees the spans as a
collector would, and keeps the raw bytes, so a test can look for what must never be there.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in value.array_value.values)
    return getattr(value, kind) if kind else None


@dataclass
class ReceivedSpan:
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    status_code: int
    service: str

    @property
    def is_server(self) -> bool:
        return self.kind == ProtoSpan.SpanKind.SPAN_KIND_SERVER


@dataclass
class OtlpReceiver:
    """Spans exported to ``url`` (POST /v1/traces, protobuf, gzip or not)."""

    spans: list[ReceivedSpan] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def accept(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        received = []
        for resource_spans in request.resource_spans:
            service = next(
                (
                    _value(a.value)
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                ),
                "",
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            status_code=span.status.code,
                            service=service,
                        )
                    )
        with self._lock:
            self.raw.append(body)
            self.spans.extend(received)

    def all_bytes(self) -> bytes:
        with self._lock:
            return b"".join(self.raw)

    def trace(self, request_id: str, *, timeout_s: float = 30) -> list[ReceivedSpan]:
        """Every span of the trace whose root span has ``request_id``, once that root has
        come (it ends last) and nothing new came for a moment."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                roots = [
                    s for s in self.spans if s.attributes.get("llmserver.request_id") == request_id
                ]
            if roots:
                time.sleep(0.3)  # a batch exported just after the root's
                with self._lock:
                    return [s for s in self.spans if s.trace_id == roots[0].trace_id]
            time.sleep(0.05)
        raise AssertionError(f"no trace for request {request_id} within {timeout_s} s")


class _Handler(BaseHTTPRequestHandler):
    accept: Callable[[bytes], None]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        self.accept(body)
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` on a loopback port of its own, in a thread; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    handler = type("Handler", (_Handler,), {"accept": staticmethod(receiver.accept)})
    with serving(handler) as url:
        receiver.url = url
        yield receiver


@dataclass
class HangingCollector:
    """Takes each export's request and never answers it (a collector that hangs)."""

    requests: int = 0
    url: str = ""


@contextmanager
def hanging_collector() -> Iterator[HangingCollector]:
    collector = HangingCollector()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            collector.requests += 1
            time.sleep(60)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    with serving(Handler) as url:
        collector.url = url
        yield collector


@dataclass
class EchoUpstream:
    """An OpenAI-compatible upstream that answers every chat with the same words and
    keeps each request's headers."""

    headers: list[dict[str, str]] = field(default_factory=list)
    url: str = ""
    failures: list[int] = field(default_factory=list)
    """Statuses the next requests are answered with (an OpenAI error), first first; once
    they are used up it answers again."""
    gate: threading.Event | None = None
    """When set, each request waits for it (up to 30 s) before it is answered."""


def _echo_handler(upstream: EchoUpstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
            upstream.headers.append({k.lower(): v for k, v in self.headers.items()})
            if upstream.gate is not None:
                upstream.gate.wait(30)
            status = upstream.failures.pop(0) if upstream.failures else 200
            usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
            if status != 200:
                error = {"error": {"message": "failed on purpose", "type": "server_error"}}
                data, content_type = json.dumps(error).encode(), "application/json"
            elif body.get("stream"):
                chunks = [
                    {"choices": [{"index": 0, "delta": {"content": "echo reply"}}]},
                    {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                    {"choices": [], "usage": usage},
                ]
                data = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
                data += b"data: [DONE]\n\n"
                content_type = "text/event-stream"
            else:
                message = {"role": "assistant", "content": "echo reply"}
                answer = {
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": usage,
                }
                data, content_type = json.dumps(answer).encode(), "application/json"
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


@contextmanager
def echo_upstream() -> Iterator[EchoUpstream]:
    upstream = EchoUpstream()
    with serving(_echo_handler(upstream)) as url:
        upstream.url = url
        yield upstream
