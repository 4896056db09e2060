"""``llmserver teams`` creates, lists, shows and changes teams, ``llmserver keys`` puts a
key in a team and takes it out, and every change is audited with ``cli`` as its actor."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from integration.storage.key_cli import key_cli, run
from llmserver.adapters.sql import SqlDatabase
from llmserver.domain.audit import CLI_ACTOR, AuditAction, AuditEntry, AuditQuery


@pytest.fixture
def cli(tmp_path: Path) -> click.Group:
    return key_cli(tmp_path)


def teams(cli: click.Group, *args: str) -> str:
    return run(cli, *args, group="teams")


def refused(cli: click.Group, *args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code != 0
    return result.output


def audit_trail(tmp_path: Path) -> list[AuditEntry]:
    async def read() -> list[AuditEntry]:
        db = SqlDatabase.from_url(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
        try:
            return list((await db.audit.query(AuditQuery()))[0])
        finally:
            await db.dispose()

    return asyncio.run(read())


def test_a_team_is_created_with_every_limit_shown_listed_and_changed(
    cli: click.Group, tmp_path: Path
) -> None:
    created = json.loads(
        teams(
            cli,
            *("create", "--name", "research", "--rpm", "100", "--tpm", "50000"),
            *("--quota-tokens", "1000000", "--max-parallel", "8"),
            *("--budget-usd", "25.50", "--budget-window", "week", "--json"),
        )
    )
    assert {k: created[k] for k in ("name", "rpm_limit", "tpm_limit", "max_parallel")} == {
        "name": "research",
        "rpm_limit": 100,
        "tpm_limit": 50_000,
        "max_parallel": 8,
    }
    assert (created["quota_tokens"], created["budget_usd"], created["budget_window"]) == (
        1_000_000,
        "25.50",
        "week",
    )
    shown = json.loads(teams(cli, "show", "research", "--json"))
    assert (shown["id"], shown["used_tokens"], shown["spent_usd"]) == (created["id"], 0, "0.00")
    assert "research" in teams(cli, "list")

    changed = json.loads(
        teams(cli, "update", created["id"], "--rpm", "none", "--name", "lab", "--json")
    )
    assert (changed["name"], changed["rpm_limit"], changed["tpm_limit"]) == ("lab", None, 50_000)
    entries = [(e.action, e.target, e.actor_key_id) for e in audit_trail(tmp_path)]
    assert entries == [
        (AuditAction.TEAM_UPDATE, created["id"], CLI_ACTOR),
        (AuditAction.TEAM_CREATE, created["id"], CLI_ACTOR),
    ]
    assert audit_trail(tmp_path)[0].after == {"name": "lab", "rpm_limit": None}


def test_bad_team_settings_are_refused_saying_what_is_wrong(cli: click.Group) -> None:
    teams(cli, "create", "--name", "a")
    assert "A team named 'a' exists already" in refused(cli, "teams", "create", "--name", "a")
    assert "at most 64 characters" in refused(cli, "teams", "create", "--name", "n" * 65)
    assert "rpm_limit must be between 1" in refused(
        cli, "teams", "create", "--name", "b", "--rpm", "0"
    )
    assert "No team with id or name 'zz'" in refused(cli, "teams", "update", "zz", "--rpm", "1")
    assert "No team with id or name 'zz'" in refused(cli, "teams", "show", "zz")


def test_a_key_joins_a_team_moves_and_leaves_it(cli: click.Group, tmp_path: Path) -> None:
    first = json.loads(teams(cli, "create", "--name", "first", "--json"))
    second = json.loads(teams(cli, "create", "--name", "second", "--json"))
    key = json.loads(run(cli, "create", "--name", "k", "--team", "first", "--json"))["details"]
    assert key["team_id"] == first["id"]

    moved = json.loads(run(cli, "update", key["id"], "--team", second["id"], "--json"))
    assert moved["team_id"] == second["id"]
    left = json.loads(run(cli, "update", key["id"], "--no-team", "--json"))
    assert left["team_id"] is None
    assert "team_id:        -" in run(cli, "show", key["id"])
    assert "No team with id or name 'nope'" in refused(
        cli, "keys", "create", "--name", "x", "--team", "nope"
    )
    assert "contradict" in refused(cli, "keys", "update", key["id"], "--team", "a", "--no-team")
    updates = [e for e in audit_trail(tmp_path) if e.action is AuditAction.KEY_UPDATE]
    assert [e.after for e in updates] == [{"team_id": None}, {"team_id": second["id"]}]
