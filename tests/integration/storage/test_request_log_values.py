"""Request-log rows carry what clients send: on PostgreSQL, which enforces column lengths
and refuses NUL characters, every value the server accepts must be stored, and a row it
cannot store must not hold back the rows after it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from livesupport import running_server
from llmserver.adapters.sql import SqlDatabase
from llmserver.domain.logs import REQUEST_ID_MAX_CHARS, LogQuery, RequestLog
from llmserver.domain.registry import MODEL_ID_MAX_CHARS

pytestmark = pytest.mark.postgres


async def _logged(url: str, request_ids: set[str], timeout_s: float = 15.0) -> list[RequestLog]:
    """The rows of these requests once all are written, or what there is at the timeout."""
    db = SqlDatabase.from_url(url)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            rows, _ = await db.logs.query(LogQuery(limit=1000))
            found = [r for r in rows if r.request_id in request_ids]
            if len(found) == len(request_ids) or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.2)
    finally:
        await db.dispose()


def test_long_request_ids_and_unknown_model_names_are_logged_and_later_rows_flow(
    make_postgres_database: Callable[[], str], demo_model_dir: Path, tmp_path: Path
) -> None:
    url = make_postgres_database()
    longest_id = "r" * REQUEST_ID_MAX_CHARS
    sent = {  # request id -> model asked for
        longest_id: "demo",
        "unknown-long-model": "m" * 300,
        "unknown-nul-model": "bad\x00name",
        "after": "demo",
    }
    with (
        running_server(tmp_path, demo_model_dir, database_url=url) as server,
        httpx.Client(base_url=server.base_url, timeout=60) as client,
    ):
        statuses = {
            request_id: client.post(
                "/v1/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
                headers={
                    "Authorization": f"Bearer {server.user_key}",
                    "X-Request-ID": request_id,
                },
            ).status_code
            for request_id, model in sent.items()
        }
        rows = {r.request_id: r for r in asyncio.run(_logged(url, set(sent)))}

    assert list(statuses.values()) == [200, 404, 404, 200]
    assert set(rows) == set(sent)
    # A name no model has is logged cut to the longest model id, NUL made printable.
    assert rows["unknown-long-model"].model == "m" * MODEL_ID_MAX_CHARS
    assert rows["unknown-nul-model"].model == "bad\ufffdname"
    assert "rows_dead_lettered" not in (tmp_path / "server.log").read_text()
