"""The request-id and access-log middleware, and the writer of access lines.

One line per request, from its access record (``app.lane.record``). Nothing here ever logs
a key secret or a prompt: the line carries the key *prefix* only.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
from litestar.enums import ScopeType

from llmserver.app import paths
from llmserver.app.lane.record import open_record, scope_header
from llmserver.app.log_setup import uses_console
from llmserver.app.settings import LogFormat
from llmserver.domain.logs import REQUEST_ID_MAX_CHARS

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from llmserver.app.metrics import Metrics

REQUEST_ID_HEADER = b"x-request-id"


def clean_request_id(raw: bytes | None) -> str:
    """Honour a caller's request id if it is printable and short, else make one."""
    if raw:
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            text = ""
        if 0 < len(text) <= REQUEST_ID_MAX_CHARS and text.isprintable():
            return text
    return new_request_id()


def new_request_id() -> str:
    """32 hex digits: the time in microseconds, then 76 random bits.

    Time first, so ids sort by creation and the request-log index on them grows at its
    right edge (random ids halved the SQLite insert rate with their page splits). Unique is
    all an id must be, not unguessable, so the module's PRNG serves: ``uuid4`` reads the OS
    entropy pool, a system call per id.
    """
    # One format of one integer: two formats were 1.5 times the cost.
    return "%032x" % (time.time_ns() // 1000 << 76 | random.getrandbits(76))


_LINE = msgspec.json.Encoder()

# Unicode line breaks that JSON leaves unescaped (NEL, LINE and PARAGRAPH SEPARATOR), as
# msgspec writes them, UTF-8 encoded: a client's text (a model name, a path) holding one
# would cut its access line in two for every reader that splits lines the Unicode way
# (Python's ``str.splitlines``, JavaScript). structlog's renderer escapes all non-ASCII.
_BREAKS = ((b"\xc2\x85", b"\\u0085"), (b"\xe2\x80\xa8", b"\\u2028"), (b"\xe2\x80\xa9", b"\\u2029"))


def _one_line(line: bytes) -> bytes:
    """``line`` with those breaks escaped; the common line, with none, is returned as is."""
    if b"\xc2\x85" not in line and b"\xe2\x80" not in line:
        return line
    for raw, escaped in _BREAKS:
        line = line.replace(raw, escaped)
    return line


class JsonAccessLog:
    """The access line as the structlog JSON renderer would print it, without the
    processor chain: one ``msgspec`` encode per request.

    Inside an event loop, the lines of one turn of the loop are written together when it
    ends: one write and flush for every request that finished in it, where a write each
    was a system call per request. Outside a loop, a line is written at once.
    """

    def __init__(self, stream: Any = None, *, debug: bool = False) -> None:
        self._stream = stream
        self._debug = debug
        self._pending: list[bytes] = []
        self._second = -1
        self._second_text = ""

    def info(self, event: str, **fields: Any) -> None:
        self._add("info", event, fields)

    def debug(self, event: str, **fields: Any) -> None:
        """Written only when the level is DEBUG, as structlog's level filter would."""
        if self._debug:
            self._add("debug", event, fields)

    def _add(self, level: str, event: str, fields: dict[str, Any]) -> None:
        fields["event"] = event
        fields["level"] = level
        fields["timestamp"] = self._timestamp()
        first = not self._pending
        self._pending.append(_one_line(_LINE.encode(fields)))
        if first:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:
                self.flush()

    def _timestamp(self) -> str:
        """What ``datetime.now(UTC).isoformat()`` gives (with ``Z``), at a third of the cost:
        the date and time of day are formatted once per second."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int((now - second) * 1_000_000):06d}Z"

    def flush(self) -> None:
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        stream = self._stream or sys.stdout
        stream.write(b"\n".join(lines).decode() + "\n")
        stream.flush()


class _Silent:
    def info(self, event: str, **fields: Any) -> None:
        return None

    def debug(self, event: str, **fields: Any) -> None:
        return None


def access_logger(fmt: LogFormat, level: str) -> Any:
    """What writes the access lines: the fast JSON writer unless a human reads them."""
    threshold = logging.getLevelNamesMapping()[level.upper()]
    if threshold > logging.INFO:
        return _Silent()
    if uses_console(fmt):
        return structlog.get_logger("llmserver.access")
    return JsonAccessLog(debug=threshold <= logging.DEBUG)


class AccessLogMiddleware:
    """Raw ASGI middleware: request id in, request id out, one access line per request.

    Raw ASGI rather than Litestar's middleware classes keeps the per-request cost to a
    few dictionary operations, which matters for the gateway-overhead benchmark.
    """

    def __init__(
        self, app: ASGIApp, metrics: Callable[[], Metrics | None], log: Any = None
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.log = log if log is not None else structlog.get_logger("llmserver.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        record = open_record(scope)
        request_id = record.request_id = clean_request_id(scope_header(scope, REQUEST_ID_HEADER))
        started = time.perf_counter()
        status = 500
        route = scope.get("path", "")
        label = route_label(route)

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER, request_id.encode()),
                ]
            await send(message)

        metrics = self.metrics()
        if metrics is not None:
            metrics.request_started(label)
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            if metrics is not None:
                metrics.request_finished(label, status, elapsed)
            # Probes poll every few seconds: at INFO their lines would bury the traffic.
            write = self.log.debug if route in _PROBES else self.log.info
            write(
                "request",
                request_id=request_id,
                method=scope.get("method"),
                path=route,
                status=status,
                latency_ms=round(elapsed * 1000, 2),
                key_prefix=record.key_prefix,
                role=record.role,
                model=record.model,
                prompt_tokens=record.prompt_tokens,
                completion_tokens=record.completion_tokens,
                cache=record.cache,
                error_code=record.error_code,
            )


_KNOWN_ROUTES = (
    paths.CHAT_COMPLETIONS,
    paths.COMPLETIONS,
    paths.EMBEDDINGS,
    paths.MESSAGES,
    paths.COUNT_TOKENS,
    paths.RESPONSES,
    paths.MODELS,
    paths.HEALTHZ,
    paths.READYZ,
    paths.METRICS,
)


_PROBES = frozenset({paths.HEALTHZ, paths.READYZ})

_ADMIN_SECTIONS = frozenset({"keys", "usage", "logs", "roles"})


def route_label(path: str) -> str:
    """A bounded route label for metrics: raw paths carry ids and arbitrary junk."""
    for known in _KNOWN_ROUTES:
        if path == known:
            return known
    if path.startswith(f"{paths.MODELS}/"):
        return paths.MODEL_LABEL
    if path.startswith(f"{paths.ADMIN}/"):
        section = path.split("/")[2]
        return f"{paths.ADMIN}/{section}" if section in _ADMIN_SECTIONS else "other"
    if path.startswith(paths.UI):
        return paths.UI
    return "other"
