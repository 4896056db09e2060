"""The upstream client's requests as HTTP client spans, with W3C trace context."""

from __future__ import annotations

import ssl

from llmserver.adapters.inference.http_upstream_client import Timeouts, Upstream, UpstreamResponse
from llmserver.domain.tracing import Attributes, SpanKind, Spanned, Tracer


class TracedUpstream(Upstream):
    """An ``Upstream`` whose every request (each retry too) is an HTTP client span, and
    carries that span's W3C ``traceparent`` so the upstream's own spans join the trace.

    The span ends when the head of the answer has come (or the request failed), as
    OpenTelemetry's aiohttp client instrumentation ends it: the body's time is the
    inference span's. It names the origin and path, never a header: the
    ``Authorization`` line stays out of it."""

    def __init__(self, tracer: Tracer, base_url: str, tls: ssl.SSLContext) -> None:
        """``partial(TracedUpstream, tracer)`` is an ``UpstreamClient``'s ``pools``."""
        super().__init__(base_url, tls)
        self._tracer = tracer

    async def send(
        self, method: bytes, path: str, body: bytes, headers: bytes, timeouts: Timeouts
    ) -> UpstreamResponse:
        tracer = self._tracer
        name = method.decode()
        attributes: Attributes = {
            "http.request.method": name,
            "server.address": self.host,
            "server.port": self.port,
            "url.full": self._origin + path,
        }
        with Spanned(tracer, name, attributes, SpanKind.CLIENT) as span:
            traced = headers + b"traceparent: " + tracer.traceparent(span).encode() + b"\r\n"
            response = await super().send(method, path, body, traced, timeouts)
            span.set("http.response.status_code", response.status)
            if response.status >= 400:
                span.fail(str(response.status))
            return response
