"""Starting real LLM Server processes for tests (used by tests/conftest.py fixtures)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

import httpx
import pytest

if TYPE_CHECKING:
    from openai import OpenAI

REPO = Path(__file__).resolve().parent.parent
TEST_SECRET = "live-server-test-secret-" + "x" * 24


KEY_PATTERN = re.compile(rb"llms_[a-z0-9]{12}_[A-Za-z0-9_-]{16,}")


def find_key_secrets(paths: list[Path]) -> set[str]:
    """Files among ``paths`` that contain anything shaped like a full API key."""
    return {str(p) for p in paths if p.is_file() and KEY_PATTERN.search(p.read_bytes())}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class IssuedKeys:
    admin: str
    user: str
    playground: str
    revoked: str
    ids: dict[str, str] = field(default_factory=dict)


async def issue_keys(database_url: str, secret: str) -> IssuedKeys:
    from llmserver.adapters.sql.database import SqlDatabase
    from llmserver.domain.keys import ApiKey, KeyHasher, Role, generate_key

    hasher = KeyHasher(secret)
    database = SqlDatabase.from_url(database_url)
    now = datetime.now(UTC)
    plain: dict[str, str] = {}
    ids: dict[str, str] = {}
    try:
        for name, role, rpm, quota in (
            ("admin", Role.ADMIN, None, None),
            ("user", Role.USER, 600, 5_000_000),
            ("playground", Role.PLAYGROUND, 600, 1_000_000),
            ("revoked", Role.USER, None, None),
        ):
            issued = generate_key()
            key = ApiKey(
                id=uuid.uuid4().hex,
                name=f"test-{name}",
                prefix=issued.prefix,
                key_hash=hasher.hash(issued.plaintext),
                role=role,
                created_at=now,
                rpm_limit=rpm,
                quota_tokens=quota,
            )
            await database.keys.add(key)
            if name == "revoked":
                await database.keys.revoke(key.id, now)
            plain[name] = issued.plaintext
            ids[name] = key.id
    finally:
        await database.dispose()
    return IssuedKeys(ids=ids, **plain)


@dataclass
class LiveServer:
    base_url: str
    keys: IssuedKeys
    database_url: str
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]

    @property
    def admin_key(self) -> str:
        return self.keys.admin

    @property
    def user_key(self) -> str:
        return self.keys.user

    @property
    def playground_key(self) -> str:
        return self.keys.playground

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def server_env(database_url: str, demo_model_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMSERVER_")}
    env.update(
        {
            "LLMSERVER_ENV": "test",
            "LLMSERVER_SERVER_SECRET": TEST_SECRET,
            "LLMSERVER_DATABASE_URL": database_url,
            "LLMSERVER_DEMO_MODEL_DIR": str(demo_model_dir),
            "LLMSERVER_LOG_FORMAT": "json",
            "LLMSERVER_LOG_FLUSH_MS": "50",
            "LLMSERVER_UI_DIST_DIR": str(REPO / "frontend" / "dist"),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def spawn_server(
    env: dict[str, str], log_path: Path, port: int, args: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """Start ``llmserver serve`` (with ``args`` added) without waiting for it."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "llmserver.cli", "serve", "--port", str(port), *args],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def start_server(env: dict[str, str], log_path: Path, port: int) -> subprocess.Popen[bytes]:
    """Start ``llmserver serve`` and wait until ``/readyz`` answers 200."""
    process = spawn_server(env, log_path, port)
    deadline = time.monotonic() + 120
    url = f"http://127.0.0.1:{port}/readyz"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"server not ready within 120 s:\n{log_path.read_text()}")


def stop_server(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def migrate(database_url: str) -> None:
    """Upgrade the database to head, as ``llmserver migrate`` does, but in this process: a
    fresh interpreter costs some 2 s of CPU per server started, the upgrade itself 0.1 s.
    In a thread of its own, so that an async test may call it too."""
    from llmserver.adapters.sql.migrate import upgrade

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, upgrade(database_url)).result()


@contextmanager
def running_server(
    root: Path, model_dir: Path, *, database_url: str | None = None, **env: str
) -> Iterator[LiveServer]:
    """A ready server with the four test keys issued, logging to ``root / "server.log"``
    and stopped on exit; its database is migrated first, a SQLite file in ``root`` unless
    ``database_url`` names another. ``env`` adds to (or overrides) ``server_env``'s."""
    url = database_url or f"sqlite+aiosqlite:///{root / 'llmserver.db'}"
    full_env = server_env(url, model_dir, **env)
    migrate(url)
    keys = asyncio.run(issue_keys(url, TEST_SECRET))
    port = free_port()
    log_path = root / "server.log"
    process = start_server(full_env, log_path, port)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", keys, url, log_path, full_env, process)
    finally:
        stop_server(process)


def wait_for_port(port: int, timeout_s: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


class RedisProcess:
    """A private ``redis-server`` (no persistence) that can be stopped and restarted on
    the same port, as a Redis outage looks to the app."""

    def __init__(self, root: Path, *options: str) -> None:
        """``options``: more ``redis-server`` arguments (a unix socket, a password)."""
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.binary = binary
        self.root = root
        self.port = free_port()
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = (self.root / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root),
                *self.options,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


class _Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)
_SDK_CLIENTS: list[_Closable] = []


def closed_after_test(client: C) -> C:
    """``client``, closed when the test ends (by ``close_sdk_clients``, which
    tests/conftest.py runs after every test): an SDK client left to the garbage collector
    leaves its pooled sockets unclosed, a ResourceWarning that fails a later test."""
    _SDK_CLIENTS.append(client)
    return client


def openai_client(server: LiveServer, key: str | None = None, *, timeout: float = 60) -> OpenAI:
    """The openai SDK on ``server``'s ``/v1`` with ``key`` (the user key by default), no
    retries, closed when the test ends."""
    from openai import OpenAI

    client = OpenAI(
        base_url=server.base_url + "/v1",
        api_key=key or server.user_key,
        max_retries=0,
        timeout=timeout,
    )
    return closed_after_test(client)


def close_sdk_clients() -> None:
    while _SDK_CLIENTS:
        _SDK_CLIENTS.pop().close()
