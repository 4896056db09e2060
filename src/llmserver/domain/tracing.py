"""The tracing port: what the gateway, its backends and the upstream client report spans to.

Tracing is off unless ``LLMSERVER_OTEL_ENDPOINT`` is set, and off means absent: the
composition root then builds no tracer, no traced wrapper and no middleware, so a request
pays nothing for it (``gateway.traced`` holds the wrappers it picks when tracing is on).
An adapter that takes a tracer keeps ``None`` for off and checks that once per request.

Spans never carry a secret (an API key, an ``Authorization`` header) or an error's message
(an upstream's may quote the prompt): a failure is recorded by its type alone
(``error_type``). Prompt and completion text go into spans only when ``log_bodies`` says
so (``LLMSERVER_LOG_BODIES``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import AbstractContextManager
from enum import Enum
from types import TracebackType
from typing import Protocol

from llmserver.domain.errors import GatewayError

QUEUE_WAIT = "llmserver.queue.wait"
"""The span of a request's wait in a local backend's queue, until the model takes it."""

AttributeValue = str | bool | int | float | tuple[str, ...]
Attributes = Mapping[str, AttributeValue]


class SpanKind(Enum):
    INTERNAL = "internal"
    SERVER = "server"
    """A request this server answers."""
    CLIENT = "client"
    """A call to another server (an upstream)."""


class Span(Protocol):
    def set(self, key: str, value: AttributeValue) -> None: ...

    def fail(self, error: BaseException | str) -> None:
        """Mark the span failed with ``error_type(error)`` (or the type ``error`` names);
        an exception's message is not recorded."""
        ...

    def end(self) -> None:
        """End it now, once."""
        ...


class Tracer(Protocol):
    @property
    def log_bodies(self) -> bool:
        """Whether spans may carry prompt and completion text."""
        ...

    def start(
        self,
        name: str,
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes | None = None,
        traceparent: str | None = None,
    ) -> Span:
        """A started span, child of this context's current span; a request's root span
        is the child of ``traceparent`` instead when its caller sent one (W3C)."""
        ...

    def current(self, span: Span) -> AbstractContextManager[None]:
        """Makes ``span`` the current span of this context for the block: spans started
        in it are its children. The manager may be entered again after each block."""
        ...

    def traceparent(self, span: Span) -> str:
        """The W3C ``traceparent`` header value that makes a call out ``span``'s child."""
        ...

    async def close(self) -> None:
        """Export what is pending and stop (at shutdown)."""
        ...


def error_type(error: BaseException | str) -> str:
    """What a failed span records of its error: the gateway's error code, ``cancelled``
    for a client that left, else the exception's class name."""
    if isinstance(error, str):
        return error
    if isinstance(error, GatewayError):
        return error.code
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return "cancelled"
    return type(error).__name__


class Spanned:
    """``with Spanned(tracer, name) as span:`` a child of the current span around the
    block, failed by an exception that leaves it, ended on the way out. It is not made
    current (that costs a context switch a span): for a step that starts no span inside."""

    __slots__ = ("_span",)

    def __init__(
        self,
        tracer: Tracer,
        name: str,
        attributes: Attributes | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> None:
        self._span = tracer.start(name, kind=kind, attributes=attributes)

    def __enter__(self) -> Span:
        return self._span

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is not None:
            self._span.fail(error)
        self._span.end()
