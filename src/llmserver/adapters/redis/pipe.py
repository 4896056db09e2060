"""One pipelined Redis connection for the calls on the replicas' request path.

Why not redis-py for these: one ``EVALSHA`` through its pooled asyncio client executed
about 324,000 CPU instructions here (callgrind, 300 calls: the pool's condition and
timeout, retries, observability hooks, argument encoding), and 159,000 on a bare
connection of its own; in replicas mode a cache hit makes four such calls and cost 4.7
times a single-process hit. This connection writes each command as soon as it is made and
matches replies to commands in order (Redis answers a connection's commands in the order
they came), with hiredis parsing the replies, so concurrent batches share it without a
pool and without waiting for one another. Everything else (seeding, flushes, the lease,
cache writes) stays on redis-py.

Failures look like redis-py's, so the failure policy treats them alike: a connection
that cannot be made or is lost raises ``redis.exceptions.ConnectionError``, a reply later
than ``timeout_s`` raises ``redis.exceptions.TimeoutError`` (the late reply, when it comes,
is matched to its command and dropped), an error reply raises ``ResponseError``. A
command that fails on a connection made before it (a Redis restart closes every one) is
sent once more on a new connection, as redis-py's single retry does.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, cast

import hiredis
from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = str | bytes | int


class Lua:
    """A script and its SHA-1, the name ``EVALSHA`` knows it by."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 (Redis's name)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.reader = hiredis.Reader(replyError=ResponseError)
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_exception(RedisConnectionError(f"connection to Redis lost: {exc}"))

    def drop(self) -> None:
        self.lost = True  # nothing more is sent on it; connection_lost fails the waiting
        if self.transport is not None:
            self.transport.abort()


class RedisPipe:
    def __init__(self, url: str, *, timeout_s: float = 0.5) -> None:
        """``url`` as redis-py reads it (``redis://``, ``rediss://`` with TLS, ``unix://``),
        so that both connections of a process reach the same Redis."""
        options = parse_url(url)
        self._path: str | None = options.get("path")
        self._host: str = options.get("host", "localhost")
        self._port = int(options.get("port", 6379))
        self._db = int(options.get("db", 0))
        self._password: str | None = options.get("password")
        self._username: str | None = options.get("username")
        self._tls = _tls(options) if options.get("connection_class") is SSLConnection else None
        self._timeout_s = timeout_s
        self._conn: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None

    async def evalsha(self, lua: Lua, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """``EVALSHA``; the first time a Redis has not seen the script, ``EVAL``."""
        try:
            return await self.call("EVALSHA", lua.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self.call("EVAL", lua.text, len(keys), *keys, *args)

    async def mget(self, keys: Sequence[str]) -> list[Any]:
        replies: list[Any] = await self.call("MGET", *keys)
        return replies

    async def call(self, *command: Arg) -> Any:
        conn = await self._connection()
        try:
            return await self._send(conn, command)
        except RedisConnectionError:
            if not conn.lost:
                raise
            return await self._send(await self._connection(), command)  # once, as redis-py

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.drop()
            self._conn = None

    async def _send(self, conn: _Protocol, command: Sequence[Arg]) -> Any:
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        conn.waiting.append(waiter)
        assert conn.transport is not None
        # RESP, encoded in C; hiredis's stub types the command as a tuple of one item.
        conn.transport.write(hiredis.pack_command(tuple(command)))  # type: ignore[arg-type]
        # A loop timer rather than asyncio.timeout: a few microseconds less per command.
        timer = loop.call_later(self._timeout_s, _expire, waiter, self._timeout_s)
        try:
            reply = await waiter
        finally:
            timer.cancel()
        if isinstance(reply, ResponseError):
            if str(reply).startswith("NOSCRIPT"):
                raise NoScriptError(str(reply))
            raise reply
        return reply

    async def _connection(self) -> _Protocol:
        conn = self._conn
        if conn is not None and not conn.lost:
            return conn
        if self._connecting is None or self._connecting.done():
            # Shared by the calls that find no connection; shielded, so that a caller
            # cancelled meanwhile does not cancel the others' connection.
            self._connecting = asyncio.ensure_future(self._connect())
            self._connecting.add_done_callback(_retrieved)
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        conn: _Protocol | None = None
        try:
            async with asyncio.timeout(self._timeout_s):
                if self._path is not None:
                    _, conn = await loop.create_unix_connection(_Protocol, self._path)
                else:
                    _, conn = await loop.create_connection(
                        _Protocol, self._host, self._port, ssl=self._tls
                    )
                setup: list[Sequence[Arg]] = []
                if self._password is not None:
                    auth: list[Arg] = ["AUTH", self._password]
                    if self._username is not None:
                        auth.insert(1, self._username)
                    setup.append(auth)
                if self._db:
                    setup.append(["SELECT", self._db])
                for command in setup:
                    await self._send(conn, command)
        except BaseException as exc:
            if conn is not None:
                conn.drop()  # a refused AUTH or SELECT leaves no connection behind
            if isinstance(exc, OSError | TimeoutError):
                where = self._path or f"{self._host}:{self._port}"
                raise RedisConnectionError(f"cannot connect to Redis at {where}: {exc!r}") from exc
            raise
        self._conn = conn
        return conn


def _retrieved(connecting: asyncio.Future[_Protocol]) -> None:
    """Marks a failed connection attempt's error as seen: its callers each got it, or
    were cancelled and will not."""
    if not connecting.cancelled():
        connecting.exception()


def _expire(waiter: asyncio.Future[Any], timeout_s: float) -> None:
    # The waiter stays in its place in the queue: a reply that comes late is taken for
    # it and dropped, and the commands after it still get their own.
    if not waiter.done():
        waiter.set_exception(RedisTimeoutError(f"no reply from Redis in {timeout_s:g} s"))


def _tls(options: Mapping[str, Any]) -> ssl.SSLContext:
    """TLS for a ``rediss://`` URL: verified against the system's CAs, or ``ssl_ca_certs``;
    ``ssl_cert_reqs=none`` turns verification off, as it does for redis-py."""
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    if options.get("ssl_cert_reqs") in ("none", ssl.CERT_NONE):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
