"""What the HTTP benchmarks share: ports, environments, databases and API keys for the
servers they start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(**settings: str) -> dict[str, str]:
    """This process's environment without its ``LLMSERVER_*`` variables, plus ``settings``
    (``database_url="..."`` is ``LLMSERVER_DATABASE_URL``): the caller's own configuration
    must not leak into a benchmark's server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMSERVER_")}
    env.update({f"LLMSERVER_{name.upper()}": value for name, value in settings.items()})
    return env


def migrate(env: Mapping[str, str]) -> None:
    """Bring the database ``env`` names up to the schema's head."""
    subprocess.run(
        [sys.executable, "-m", "llmserver.cli", "migrate"],
        cwd=ROOT,
        env=dict(env),
        check=True,
        capture_output=True,
    )


async def issue_key(
    database_url: str, secret: str, *, team: dict[str, Any] | None = None, **limits: Any
) -> str:
    """A new key in the server's database, SQLite or PostgreSQL (``role``, ``rpm_limit``,
    ``quota_tokens``...); with ``team`` (a team's limits), in a new team of its own."""
    from llmserver.adapters.clock import SystemClock
    from llmserver.adapters.sql.database import SqlDatabase
    from llmserver.domain.key_admin import KeyAdmin
    from llmserver.domain.keys import KeyHasher
    from llmserver.domain.registry import ModelRegistry

    db = SqlDatabase.from_url(database_url)
    try:
        # Bench keys name no models (every model), so no registry is needed to resolve them.
        admin = KeyAdmin(
            db.keys,
            db.usage,
            KeyHasher(secret),
            SystemClock(),
            ModelRegistry(()),
            db.budget,
            db.model_quota,
            db.teams,
        )
        if team is not None:
            from llmserver.domain.team_admin import TeamAdmin

            teams = TeamAdmin(db.teams, SystemClock(), usage=db.usage, budget=db.budget)
            limits["team"] = (await teams.create(name="bench-team", **team)).name
        _, plaintext = await admin.create(name="bench", **limits)
    finally:
        await db.dispose()
    return plaintext
