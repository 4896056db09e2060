"""What the proxy benchmark starts besides our servers: a fresh PostgreSQL database and a
flushed Redis database for replicas mode, and LiteLLM's proxy for the side-by-side."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from pathlib import Path

import asyncpg
import redis
from sqlalchemy.engine import make_url

from bench.load import spawn
from bench.support import ROOT

POSTGRES_SERVER_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
# A database number of its own: the tests use 0 and 1 and flush what they write.
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")

LITELLM = ROOT / "bench" / ".litellm-venv" / "bin" / "litellm"
LITELLM_FAILED = ROOT / "bench" / ".litellm-venv.failed"
LITELLM_KEY = "sk-bench-" + "l" * 24


async def _postgres_admin(sql: str) -> None:
    server = make_url(POSTGRES_SERVER_URL).set(drivername="postgresql")
    conn = await asyncpg.connect(server.render_as_string(hide_password=False), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database() -> str:
    """A new empty PostgreSQL database; its SQLAlchemy asyncpg URL."""
    name = f"llmserver_bench_{secrets.token_hex(4)}"
    asyncio.run(_postgres_admin(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_SERVER_URL).set(drivername="postgresql+asyncpg", database=name)
    return url.render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    name = make_url(url).database
    asyncio.run(_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def flushed_redis() -> str:
    """``REDIS_URL``, its database emptied: a cache hit must come from this run's answers."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()
    return REDIS_URL


def litellm_missing() -> str | None:
    """Why LiteLLM cannot be measured here, or None when its proxy is installed."""
    if LITELLM.exists():
        return None
    if LITELLM_FAILED.exists():
        return LITELLM_FAILED.read_text().strip().replace("\n", " / ")
    return f"{LITELLM.relative_to(ROOT)} is missing: run scripts/install-litellm.sh"


def spawn_litellm(port: int, upstream_port: int, tmp: Path) -> subprocess.Popen[bytes]:
    """LiteLLM's proxy, one worker, serving ``instant`` from the upstream; no database,
    so only the master key authenticates (virtual keys need its Prisma engines). Its
    output goes to ``tmp/litellm.log``; it serves after half a minute or so."""
    config = tmp / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: instant\n"
        "    litellm_params:\n"
        "      model: openai/instant\n"
        f"      api_base: http://127.0.0.1:{upstream_port}/v1\n"
        "      api_key: upstream-key\n"
        "general_settings:\n"
        f"  master_key: {LITELLM_KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
    )
    # Offline: the model cost map ships with the package instead of coming from GitHub.
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    argv = [str(LITELLM), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--num_workers", "1"]
    return spawn(argv, env, tmp / "litellm.log")
