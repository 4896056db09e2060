"""A request's root span: raw ASGI middleware, there only when tracing is on.

It sits inside the access-log middleware (which has made the request id and the access
record by then) and around everything else, the completion lane included: one server span
per HTTP request, current while the app answers, so the gateway's spans are its children,
and ended once the answer has been sent, a stream's last event included. A caller's W3C
``traceparent`` makes it a child of the caller's span. When it ends it takes from the
access record what the request turned out to be: model, token counts, cache status, error
code; the key's prefix, never its secret. Probes and metrics scrapes are not traced: they
would bury the traffic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar.enums import ScopeType

from llmserver.app import paths
from llmserver.app.access_log import route_label
from llmserver.app.lane.record import AccessRecord, access_record, scope_header
from llmserver.domain.tracing import AttributeValue, Span, SpanKind, Tracer

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

_UNTRACED = frozenset({paths.HEALTHZ, paths.READYZ, paths.METRICS})
_OPERATIONS = {
    paths.CHAT_COMPLETIONS: "chat",
    paths.COMPLETIONS: "text_completion",
    paths.EMBEDDINGS: "embeddings",
    paths.MESSAGES: "chat",
    paths.RESPONSES: "chat",
}


class TracingMiddleware:
    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        self.app = app
        self._tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != ScopeType.HTTP or path in _UNTRACED:
            await self.app(scope, receive, send)
            return
        tracer = self._tracer
        record = access_record(scope)
        method = scope["method"]
        span = tracer.start(
            f"{method} {route_label(path)}",
            kind=SpanKind.SERVER,
            attributes=_request_attributes(method, scope.get("scheme", "http"), path, record),
            traceparent=_header(scope, b"traceparent"),
        )
        status = 500
        failed = False

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            with tracer.current(span):
                await self.app(scope, receive, send_status)
        except BaseException as exc:
            failed = True
            span.fail(exc)
            raise
        finally:
            _record_outcome(span, status, record, failed=failed)
            span.end()


def _header(scope: Scope, name: bytes) -> str | None:
    value = scope_header(scope, name)
    return None if value is None else value.decode("latin-1")


def _request_attributes(
    method: str, scheme: str, path: str, record: AccessRecord
) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "http.request.method": method,
        "http.route": route_label(path),
        "url.path": path,
        "url.scheme": scheme,
        "llmserver.request_id": record.request_id,
    }
    operation = _OPERATIONS.get(path)
    if operation is not None:
        attributes["gen_ai.operation.name"] = operation
    return attributes


def _record_outcome(span: Span, status: int, record: AccessRecord, *, failed: bool) -> None:
    """What the access record says of the request, and the status it was answered with.
    A 5xx is the server's failure (the span fails, unless an exception already failed
    it); a 4xx is the client's, recorded by its error code."""
    span.set("http.response.status_code", status)
    if status >= 500 and not failed:
        span.fail(record.error_code or str(status))
    facts: tuple[tuple[str, str | int | None], ...] = (
        ("gen_ai.request.model", record.model),
        ("gen_ai.usage.input_tokens", record.prompt_tokens),
        ("gen_ai.usage.output_tokens", record.completion_tokens),
        ("llmserver.cache", record.cache),
        ("llmserver.error_code", record.error_code),
        ("llmserver.key_prefix", record.key_prefix),
    )
    for key, value in facts:
        if value is not None:
            span.set(key, value)
