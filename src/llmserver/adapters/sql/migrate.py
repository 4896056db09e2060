"""Schema migrations: a Python API over Alembic, with no ``alembic.ini`` needed.

The Alembic scripts live in ``migrations/`` at the repository root; a wheel carries them
as ``llmserver/migrations`` (hatch ``force-include``). Commands run on one async
engine; Alembic itself is synchronous, so it runs inside ``AsyncConnection.run_sync``
and ``env.py`` uses the connection it is handed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

# Before any revision script is loaded, for its side effect: see _compat.
from llmserver.adapters.sql import _compat  # noqa: F401
from llmserver.adapters.sql._engine import create_engine

Progress = Callable[[str], None]


def script_location() -> Path:
    """The Alembic script directory: inside the installed package, else the checkout's."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "migrations", here.parents[4] / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError(
        "no Alembic migrations found: expected llmserver/migrations in the installed "
        "package or migrations/ in the source checkout"
    )


def _config(
    connection: Connection | None = None,
    progress: Progress | None = None,
    extra_version_path: Path | None = None,
) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    if extra_version_path is not None:
        config.set_main_option("path_separator", "os")
        locations = [script_location() / "versions", extra_version_path]
        config.set_main_option("version_locations", os.pathsep.join(map(str, locations)))
    config.attributes["connection"] = connection
    config.attributes["progress"] = progress
    return config


@cache
def _scripts() -> ScriptDirectory:
    # Parsed once per process: the scripts do not change under a running server, and
    # /readyz, polled every few seconds, would otherwise load every revision file each time.
    return ScriptDirectory.from_config(_config())


def head_revision() -> str | None:
    return _scripts().get_current_head()


@cache
def known_revisions() -> frozenset[str]:
    """Every revision id this code's migrations define (exact ids, not prefixes)."""
    return frozenset(script.revision for script in _scripts().walk_revisions())


def newer_than_code(revision: str | None) -> bool:
    """A schema revision this code does not know: a later release's migration."""
    return revision is not None and revision not in known_revisions()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def _run(
    url: str,
    progress: Progress | None,
    alembic_command: Callable[[Config], Any],
    extra_version_path: Path | None = None,
) -> Any:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(
                lambda sync_conn: alembic_command(_config(sync_conn, progress, extra_version_path))
            )
    finally:
        await engine.dispose()


async def upgrade(url: str, revision: str = "head", progress: Progress | None = None) -> bool:
    """Upgrade to ``revision``; False when asked for head on a schema newer than this code's
    head (a revision it does not know, written by a later release): nothing to do, where
    Alembic would fail on the unknown revision. That is the rollback of an expand/contract
    release: the previous release's migrations run on the newer schema, which it serves."""

    def run(config: Config) -> bool:
        current = current_revision(config.attributes["connection"])
        if revision == "head" and newer_than_code(current):
            if progress is not None:
                progress(
                    f"schema at {current}, newer than this code's head {head_revision()} "
                    "(a later release's migration): nothing to upgrade"
                )
            return False
        command.upgrade(config, revision)
        return True

    upgraded: bool = await _run(url, progress, run)
    return upgraded


async def downgrade(url: str, revision: str = "-1", progress: Progress | None = None) -> None:
    await _run(url, progress, lambda config: command.downgrade(config, revision))


async def revision(
    url: str, message: str, *, autogenerate: bool = True, version_path: Path | None = None
) -> Path:
    """Write a new revision script (compared against the database at ``url`` when
    autogenerating, so migrate that database to head first) and return its path.

    ``version_path`` writes it elsewhere than ``migrations/versions`` (tests use this).
    """

    def make(config: Config) -> Path:
        if version_path is not None:
            version_path.mkdir(parents=True, exist_ok=True)
        script = command.revision(
            config,
            message=message,
            autogenerate=autogenerate,
            version_path=None if version_path is None else str(version_path),
        )
        assert script is not None
        assert not isinstance(script, list)
        return Path(script.path)

    result: Path = await _run(url, None, make, version_path)
    return result
