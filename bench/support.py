"""What the HTTP benchmarks share: ports and API keys for the servers they start."""

from __future__ import annotations

import socket
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def issue_key(database_url: str, secret: str, **limits: Any) -> str:
    """A new key in the server's database (``role``, ``rpm_limit``, ``quota_tokens``...)."""
    from llmserver.adapters.clock import SystemClock
    from llmserver.adapters.sql.database import SqlDatabase
    from llmserver.domain.key_admin import KeyAdmin
    from llmserver.domain.keys import KeyHasher
    from llmserver.domain.registry import ModelRegistry

    db = SqlDatabase.from_url(database_url)
    try:
        # Bench keys name no models (every model), so no registry is needed to resolve them.
        admin = KeyAdmin(db.keys, db.usage, KeyHasher(secret), SystemClock(), ModelRegistry(()))
        _, plaintext = await admin.create(name="bench", **limits)
    finally:
        await db.dispose()
    return plaintext
