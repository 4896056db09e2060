"""The ``llmserver keys`` and ``teams`` command groups run as a parent command would, on a
migrated SQLite database of the test's own (shared by the key CLI tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import click
from click.testing import CliRunner

from llmserver.adapters.sql import migrate
from llmserver.cli_keys import keys
from llmserver.cli_teams import teams
from llmserver.domain.registry import ModelRegistry, profile_models

SECRET = "cli-test-secret-0123456789-abcdefghijk"
DEMO_MODELS = ModelRegistry(profile_models("demo", demo_model_dir="unused"))


def key_cli(tmp_path: Path) -> click.Group:
    """A parent command like ``llmserver`` that hands the group its settings."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}"
    asyncio.run(migrate.upgrade(url))

    @click.group()
    @click.pass_context
    def root(ctx: click.Context) -> None:
        ctx.obj = SimpleNamespace(database_url=url, server_secret=SECRET, models=DEMO_MODELS)

    root.add_command(keys)
    root.add_command(teams)
    return root


def run(cli: click.Group, *args: str, group: str = "keys") -> str:
    result = CliRunner().invoke(cli, [group, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout
