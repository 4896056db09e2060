"""The SQLite writer process: named writes in, one transaction each, a reply out.

Frames on stdin and stdout are a 4-byte big-endian length and a msgpack body: requests
``{"ops": [[name, rows], ...]}``, replies ``{"error": null | "...", "rejected": bool}``;
``rejected`` says the database refused the rows' values (see ``_rejects``), which only
this process can tell from the exception, and is raised here as ``RowsRejected``. The
serving process starts one per database on its first write and a new one if it dies; a
write whose reply never came is reported failed, and its caller retries it.

Run as ``python -m llmserver.adapters.sql.writer_process <sqlite URL>``.
"""

from __future__ import annotations

import signal

if __name__ == "__main__":
    # First thing, before the imports: Ctrl-C and systemd's SIGTERM reach the whole process
    # group, and the server then flushes its last rows through this process. So it ignores
    # them and stops only when its input ends (the server closed it, or died).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

import asyncio
import sys
from collections.abc import Sequence
from typing import Any, BinaryIO

import msgspec
from sqlalchemy.engine import make_url

from llmserver.adapters.sql._engine import SQLITE_BUSY_TIMEOUT_MS
from llmserver.adapters.sql._rejects import rejection
from llmserver.adapters.sql._row_binder import Op, RowBinder, sqlite_sync_engine
from llmserver.domain.ports import RowsRejected

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder()


class WriterUnavailable(ConnectionError):
    pass


class WriteFailed(RuntimeError):
    pass


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


class WriterProcess:
    """The serving side: one request in flight at a time, the process restarted at need."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        async with self._lock:
            await self._started()

    async def _started(self) -> asyncio.subprocess.Process:
        if self._proc is None or self._proc.returncode is not None:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "llmserver.adapters.sql.writer_process",
                self._url,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            try:
                await self._reply(self._proc)  # ready: signals ignored, database opened
            except BaseException:
                await self._discard()
                raise
        return self._proc

    @staticmethod
    async def _reply(proc: asyncio.subprocess.Process) -> Any:
        assert proc.stdout is not None
        try:
            size = int.from_bytes(await proc.stdout.readexactly(4), "big")
            return _DECODER.decode(await proc.stdout.readexactly(size))
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            raise WriterUnavailable(f"the SQLite writer process stopped: {exc!r}") from exc

    async def run(self, ops: Sequence[Op]) -> None:
        request = _frame(_ENCODER.encode({"ops": ops}))
        async with self._lock:
            proc = await self._started()
            assert proc.stdin is not None
            assert proc.stdout is not None
            try:
                proc.stdin.write(request)
                await proc.stdin.drain()
                reply = await self._reply(proc)
            except ConnectionError as exc:
                await self._discard()
                if isinstance(exc, WriterUnavailable):
                    raise
                raise WriterUnavailable(f"the SQLite writer process stopped: {exc!r}") from exc
            except BaseException:
                # Cancelled mid-exchange: the pipe is out of step with the replies.
                await self._discard()
                raise
        if reply["error"] is not None:
            raise (RowsRejected if reply.get("rejected") else WriteFailed)(reply["error"])

    async def _discard(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()

    async def close(self, timeout_s: float = 10.0) -> None:
        """Let the process finish and exit (end of its input), or kill it after a while."""
        async with self._lock:
            proc, self._proc = self._proc, None
            if proc is None or proc.returncode is not None:
                return
            assert proc.stdin is not None
            proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), timeout_s)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _read_frame(stream: BinaryIO) -> bytes | None:
    header = stream.read(4)
    if len(header) < 4:
        return None
    return stream.read(int.from_bytes(header, "big"))


def serve(url: str, stdin: BinaryIO, stdout: BinaryIO) -> None:
    # This process may wait for a lock: it serves nothing else.
    engine = sqlite_sync_engine(make_url(url), busy_timeout_ms=SQLITE_BUSY_TIMEOUT_MS)
    binder = RowBinder(engine.dialect)
    stdout.write(_frame(_ENCODER.encode({"error": None})))  # ready
    stdout.flush()
    try:
        while (body := _read_frame(stdin)) is not None:
            error: str | None = None
            rejected = None
            try:
                with engine.begin() as conn:
                    for _ in binder.steps(conn, _DECODER.decode(body)["ops"]):
                        pass
            except Exception as exc:  # reported to the caller, which retries
                rejected = rejection(exc)
                error = str(rejected) if rejected else f"{type(exc).__name__}: {exc}"
            reply = {"error": error, "rejected": rejected is not None}
            stdout.write(_frame(_ENCODER.encode(reply)))
            stdout.flush()
    finally:
        engine.dispose()


if __name__ == "__main__":
    serve(sys.argv[1], sys.stdin.buffer, sys.stdout.buffer)
