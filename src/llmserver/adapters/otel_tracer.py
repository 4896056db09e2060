"""The tracing port over the OpenTelemetry SDK, exporting OTLP/HTTP (protobuf).

Spans go through a ``BatchSpanProcessor``: ending one puts it on a bounded queue that a
thread of the SDK's exports in batches, so a request never waits for the collector, and a
collector that is down or slow costs dropped spans, never latency. ``close`` (at shutdown)
exports what is still queued.

The provider is this server's own, not OpenTelemetry's global one, so a library that
traces through the global API is not exported by accident. The SDK's own variables still
apply to what it reads: ``OTEL_EXPORTER_OTLP_HEADERS`` (a collector's credentials),
``OTEL_EXPORTER_OTLP_TIMEOUT``, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``.
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import suppress
from types import TracebackType
from urllib.parse import urlsplit

from opentelemetry import context, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from llmserver import __version__
from llmserver.domain.tracing import (
    Attributes,
    AttributeValue,
    Span,
    SpanKind,
    Tracer,
    error_type,
)

_KINDS = {
    SpanKind.INTERNAL: trace.SpanKind.INTERNAL,
    SpanKind.SERVER: trace.SpanKind.SERVER,
    SpanKind.CLIENT: trace.SpanKind.CLIENT,
}

TRACES_PATH = "/v1/traces"
CLOSE_TIMEOUT_S = 5.0
"""How long shutdown waits for the last spans to be exported: a collector that hangs must
not hold the process past its drain time."""
_W3C = TraceContextTextMapPropagator()


def traces_url(endpoint: str) -> str:
    """The collector's traces URL: an endpoint given as a base (``http://collector:4318``)
    gets OTLP's ``/v1/traces``, as ``OTEL_EXPORTER_OTLP_ENDPOINT`` does; one that already
    names it is kept."""
    if urlsplit(endpoint).path.rstrip("/").endswith(TRACES_PATH):
        return endpoint
    return endpoint.rstrip("/") + TRACES_PATH


class _Span(Span):
    __slots__ = ("otel",)

    def __init__(self, otel: trace.Span) -> None:
        self.otel = otel

    def set(self, key: str, value: AttributeValue) -> None:
        self.otel.set_attribute(key, value)

    def fail(self, error: BaseException | str) -> None:
        # The type only, no description: an error's message may quote the prompt.
        self.otel.set_attribute("error.type", error_type(error))
        self.otel.set_status(Status(StatusCode.ERROR))

    def end(self) -> None:
        self.otel.end()


class _Current:
    """Makes a span current in this context: OpenTelemetry's ``use_span`` without its
    generator and exception handling (``Spanned`` records failures its own way)."""

    __slots__ = ("_context", "_token")

    def __init__(self, span: trace.Span) -> None:
        self._context = trace.set_span_in_context(span)
        self._token: object = None

    def __enter__(self) -> None:
        self._token = context.attach(self._context)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        context.detach(self._token)  # type: ignore[arg-type]


class OtelTracer(Tracer):
    def __init__(
        self,
        endpoint: str,
        *,
        service_name: str,
        log_bodies: bool,
        exporter: SpanExporter | None = None,
    ) -> None:
        """``exporter``: another exporter than OTLP/HTTP to ``endpoint`` (tests)."""
        self._log_bodies = log_bodies
        resource = Resource.create({"service.name": service_name, "service.version": __version__})
        # Shut down by ``close``, not by the SDK's exit hook, which would run after the
        # event loop (and the logging set up for it) is gone.
        self._provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        self._provider.add_span_processor(
            BatchSpanProcessor(exporter or OTLPSpanExporter(endpoint=traces_url(endpoint)))
        )
        self._tracer = self._provider.get_tracer("llmserver", __version__)

    @property
    def log_bodies(self) -> bool:
        return self._log_bodies

    def start(
        self,
        name: str,
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes | None = None,
        traceparent: str | None = None,
    ) -> Span:
        if traceparent is not None:
            # A caller's traceparent that does not parse is ignored: the span is a root.
            parent = _W3C.extract({"traceparent": traceparent})
        else:
            parent = None
            current = trace.get_current_span()
            if not current.is_recording() and current.get_span_context().is_valid:
                # A trace the sampler left out: its steps are not recorded either, and
                # skipping the SDK saves most of tracing's cost on such a request. Calls out
                # still carry its context on, marked unsampled.
                return _Span(current)
        return _Span(self._tracer.start_span(name, parent, _KINDS[kind], attributes=attributes))

    def current(self, span: Span) -> _Current:
        assert isinstance(span, _Span)
        return _Current(span.otel)

    def traceparent(self, span: Span) -> str:
        assert isinstance(span, _Span)
        ids = span.otel.get_span_context()
        return f"00-{ids.trace_id:032x}-{ids.span_id:016x}-{int(ids.trace_flags):02x}"

    async def close(self) -> None:
        """Exports what is queued, within ``CLOSE_TIMEOUT_S``. Blocking network calls, so
        in a thread; a daemon one, which the interpreter does not wait for at exit, as it
        would for ``asyncio.to_thread``'s should the collector hang."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def shut_down() -> None:
            try:
                self._provider.shutdown()
            finally:
                with suppress(RuntimeError):  # the loop is gone: nobody waits any more
                    loop.call_soon_threadsafe(_settle, done)

        threading.Thread(target=shut_down, name="otel-shutdown", daemon=True).start()
        try:
            await asyncio.wait_for(done, CLOSE_TIMEOUT_S)
        except TimeoutError:
            return  # the spans still queued are lost with the process


def _settle(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
