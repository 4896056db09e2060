from __future__ import annotations

import asyncio
import io
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog

from llmserver.app.access_log import (
    AccessLogMiddleware,
    JsonAccessLog,
    access_logger,
    clean_request_id,
    new_request_id,
)
from llmserver.app.settings import LogFormat
from llmserver.domain.logs import REQUEST_ID_MAX_CHARS


def test_the_fast_access_line_has_the_shape_structlog_renders() -> None:
    fields = {"request_id": "r1", "status": 200, "latency_ms": 1.5, "model": None}
    stream = io.StringIO()
    JsonAccessLog(stream).info("request", **fields)
    fast = json.loads(stream.getvalue())

    rendered = structlog.processors.JSONRenderer()(
        None,
        "info",
        {
            **structlog.processors.TimeStamper(fmt="iso", utc=True)(
                None, "info", structlog.processors.add_log_level(None, "info", {"event": "request"})
            ),
            **fields,
        },
    )
    reference = json.loads(rendered)

    assert fast.keys() == reference.keys()
    assert {k: v for k, v in fast.items() if k != "timestamp"} == {
        k: v for k, v in reference.items() if k != "timestamp"
    }
    stamped = datetime.fromisoformat(fast["timestamp"])
    assert fast["timestamp"].endswith("Z")
    assert abs(stamped - datetime.now(UTC)) < timedelta(seconds=5)
    assert stream.getvalue().count("\n") == 1


@pytest.mark.parametrize("text", ["a\u0085b", "a\u2028b", "a\u2029b", "\u2028\u0085\u2026\u2029"])
def test_a_client_s_unicode_line_break_stays_inside_its_access_line(text: str) -> None:
    """A model name with NEL or a LINE/PARAGRAPH SEPARATOR (JSON lets them through raw)
    would cut the line in two for ``str.splitlines``; escaped, it reads back as sent."""
    stream = io.StringIO()
    log = JsonAccessLog(stream)
    log.info("request", model=text)
    log.info("request", model="next")
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["model"] for line in lines] == [text, "next"]


class _Writes(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


async def test_lines_of_one_loop_turn_are_written_together_when_it_ends() -> None:
    stream = _Writes()
    log = JsonAccessLog(stream)
    for i in range(5):
        log.info("request", request_id=f"r{i}")
    assert stream.writes == 0  # nothing blocks the requests that are still running
    await asyncio.sleep(0)
    assert stream.writes == 1
    assert [json.loads(line)["request_id"] for line in stream.getvalue().splitlines()] == [
        f"r{i}" for i in range(5)
    ]
    log.info("request", request_id="r5")
    await asyncio.sleep(0)
    assert stream.writes == 2
    assert stream.getvalue().count("\n") == 6


def test_access_lines_follow_the_level_and_format() -> None:
    assert isinstance(access_logger(LogFormat.JSON, "info"), JsonAccessLog)
    assert not isinstance(access_logger(LogFormat.CONSOLE, "info"), JsonAccessLog)
    quiet = access_logger(LogFormat.JSON, "warning")
    assert not isinstance(quiet, JsonAccessLog)
    assert quiet.info("request", status=200) is None
    assert quiet.debug("request", status=200) is None


def test_request_ids_are_32_hex_digits_distinct_and_ordered_by_time() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == 10_000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    later = new_request_id()
    time.sleep(0.002)
    assert new_request_id() > later


def test_a_caller_request_id_is_kept_up_to_what_the_request_log_holds() -> None:
    longest = "~" * REQUEST_ID_MAX_CHARS
    assert clean_request_id(longest.encode()) == longest
    for unusable in (longest + "~", "tab\there", "é", ""):
        replaced = clean_request_id(unusable.encode())
        assert replaced != unusable
        assert len(replaced) == 32


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _receive() -> Any:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _ignore(message: Any) -> None:
    return None


async def _access_lines(log: JsonAccessLog, stream: io.StringIO) -> list[tuple[str, str]]:
    app = AccessLogMiddleware(_ok, lambda: None, log)
    for path in ("/readyz", "/v1/models", "/healthz"):
        scope: Any = {"type": "http", "method": "GET", "path": path, "headers": []}
        await app(scope, _receive, _ignore)
    await asyncio.sleep(0)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [(line["path"], line["level"]) for line in lines]


async def test_probe_polls_are_logged_at_debug_and_other_requests_at_info() -> None:
    stream = io.StringIO()
    assert await _access_lines(JsonAccessLog(stream), stream) == [("/v1/models", "info")]
    stream = io.StringIO()
    assert await _access_lines(JsonAccessLog(stream, debug=True), stream) == [
        ("/readyz", "debug"),
        ("/v1/models", "info"),
        ("/healthz", "debug"),
    ]


def test_the_debug_level_turns_probe_lines_on(capsys: pytest.CaptureFixture[str]) -> None:
    access_logger(LogFormat.JSON, "info").debug("request", path="/readyz")
    assert capsys.readouterr().out == ""
    access_logger(LogFormat.JSON, "debug").debug("request", path="/readyz")
    assert json.loads(capsys.readouterr().out)["level"] == "debug"
