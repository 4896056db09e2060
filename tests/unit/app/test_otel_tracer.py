"""The OpenTelemetry adapter's own rules: where it exports, and what a span holds."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from llmserver.adapters.otel_tracer import OtelTracer, traces_url
from llmserver.domain.errors import UpstreamError
from llmserver.domain.tracing import Span, SpanKind


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://otel.example/v1/traces", "https://otel.example/v1/traces"),
        ("http://gateway/otlp", "http://gateway/otlp/v1/traces"),
    ],
)
def test_an_endpoint_gets_the_otlp_traces_path_unless_it_names_it(endpoint: str, url: str) -> None:
    assert traces_url(endpoint) == url


class Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def root_and_child(caller: str) -> tuple[Keep, OtelTracer, Span, Span]:
    """A tracer exporting to a ``Keep``, a server span continuing the ``caller``'s
    traceparent, and a child started while that span is current."""
    exporter = Keep()
    tracer = OtelTracer("http://unused", service_name="t", log_bodies=False, exporter=exporter)
    root = tracer.start("root", kind=SpanKind.SERVER, traceparent=caller)
    with tracer.current(root):
        child = tracer.start("child")
    return exporter, tracer, root, child


async def test_spans_nest_fail_by_type_and_are_flushed_by_close() -> None:
    exporter, tracer, root, child = root_and_child("00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    child.fail(UpstreamError("the upstream quoted the prompt"))
    child.end()
    child.end()  # a second end (another thread's) does nothing
    assert tracer.traceparent(child).split("-")[1] == "a" * 32
    root.end()
    await tracer.close()
    by_name = {s.name: s for s in exporter.spans}
    assert len(exporter.spans) == 2
    root_ids, child_span = by_name["root"].context, by_name["child"]
    assert root_ids is not None
    assert child_span.parent is not None
    assert child_span.parent.span_id == root_ids.span_id
    assert by_name["root"].parent is not None
    assert by_name["root"].parent.span_id == int("b" * 16, 16)
    assert child_span.status.status_code is StatusCode.ERROR
    assert child_span.status.description is None
    assert dict(child_span.attributes or {}) == {"error.type": "upstream_error"}


async def test_a_trace_left_unsampled_records_nothing_and_propagates_unsampled() -> None:
    exporter, tracer, root, child = root_and_child("00-" + "c" * 32 + "-" + "d" * 16 + "-00")
    call = tracer.traceparent(child)
    child.end()
    root.end()
    await tracer.close()
    assert exporter.spans == []
    assert call.split("-")[1] == "c" * 32
    assert call.endswith("-00")
