"""The request path's pipelined Redis connection against a real Redis: replies reach the
commands they answer under concurrency, scripts load themselves, and a timeout or a
restart costs the commands caught in it, never a wrong reply to a later one."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from livesupport import RedisProcess
from llmserver.adapters.redis.pipe import Lua, RedisPipe

pytestmark = pytest.mark.redis


async def test_concurrent_commands_get_their_own_replies(redis_pipe: RedisPipe) -> None:
    replies = await asyncio.gather(*(redis_pipe.call("ECHO", f"n{i}") for i in range(300)))
    assert replies == [f"n{i}".encode() for i in range(300)]


async def test_scripts_load_themselves_and_errors_are_redis_errors(
    redis_pipe: RedisPipe, redis_url: str
) -> None:
    key = f"pipe-test:{secrets.token_hex(4)}"
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.script_flush()
        lua = Lua("return redis.call('INCRBY', KEYS[1], ARGV[1])")
        assert await redis_pipe.evalsha(lua, [key], ["5"]) == 5  # EVAL: Redis lacked it
        assert await redis_pipe.evalsha(lua, [key], [2]) == 7  # EVALSHA
        assert await client.get(key) == b"7"  # on the URL's database
        await client.set(key, "not a number")
        with pytest.raises(ResponseError, match="not an integer"):
            await redis_pipe.call("INCR", key)
        assert await redis_pipe.call("ECHO", "after") == b"after"
    finally:
        await client.delete(key)
        await client.aclose()


async def test_a_timeout_never_hands_a_late_reply_to_the_next_command(
    private_redis: RedisProcess,
) -> None:
    """Redis paused for 0.8 s: the first command times out at 0.5 s, the next is sent then
    and answered when the pause ends, with its own reply, not the first one's."""
    pipe = RedisPipe(private_redis.url, timeout_s=0.5)
    other = aioredis.Redis.from_url(private_redis.url)
    try:
        assert await pipe.call("ECHO", "warm") == b"warm"
        await other.client_pause(800)
        with pytest.raises(RedisTimeoutError):
            await pipe.call("ECHO", "late")
        assert await pipe.call("ECHO", "next") == b"next"
    finally:
        await pipe.close()
        await other.aclose()


async def test_a_restart_costs_nothing_once_redis_is_back(private_redis: RedisProcess) -> None:
    pipe = RedisPipe(private_redis.url)
    try:
        assert await pipe.call("ECHO", "before") == b"before"
        private_redis.stop()
        with pytest.raises(RedisConnectionError):
            await pipe.call("ECHO", "down")
        private_redis.start()
        assert await pipe.call("ECHO", "back") == b"back"
    finally:
        await pipe.close()


async def test_a_unix_socket_with_a_password_and_a_database(tmp_path: Path) -> None:
    """The URL is read as redis-py reads it (the pool beside it takes the same one)."""
    socket_path = tmp_path / "redis.sock"
    server = RedisProcess(tmp_path, "--unixsocket", str(socket_path), "--requirepass", "s3cret")
    server.start()
    pipe = RedisPipe(f"unix://:s3cret@{socket_path}?db=3")
    wrong = RedisPipe(f"unix://:wrong@{socket_path}?db=3")
    other = aioredis.Redis.from_url(f"unix://:s3cret@{socket_path}?db=3")
    try:
        assert await pipe.call("SET", "pipe-db", "3") == b"OK"
        assert await other.get("pipe-db") == b"3"  # database 3, through the socket
        with pytest.raises(ResponseError, match=r"WRONGPASS|invalid password"):
            await wrong.call("ECHO", "refused")
    finally:
        await pipe.close()
        await wrong.close()
        await other.aclose()
        server.stop()
