"""``llmserver keys`` sets, changes and removes a key's limits, per-model limits and
budget, and its edits are audited."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from integration.storage.key_cli import key_cli, run
from llmserver.adapters.sql import SqlDatabase
from llmserver.domain.audit import AuditAction, AuditEntry, AuditQuery
from llmserver.domain.registry import DEMO_MODEL_ID


@pytest.fixture
def cli(tmp_path: Path) -> click.Group:
    return key_cli(tmp_path)


def test_create_and_update_set_every_limit_and_updates_are_audited(
    cli: click.Group, tmp_path: Path
) -> None:
    created = json.loads(
        run(cli, "create", "--name", "lim", "--tpm", "1000", "--max-parallel", "4", "--json")
    )
    details = created["details"]
    assert (details["tpm_limit"], details["max_parallel"]) == (1000, 4)

    updated = json.loads(
        run(
            cli,
            *("update", details["prefix"], "--tpm", "none", "--max-parallel", "2"),
            *("--rpm", "9", "--quota-tokens", "unlimited", "--json"),
        )
    )

    assert (updated["tpm_limit"], updated["max_parallel"]) == (None, 2)
    assert (updated["rpm_limit"], updated["quota_tokens"], updated["name"]) == (9, None, "lim")
    shown = run(cli, "show", details["id"])
    assert "max_parallel:   2" in shown
    assert "tpm_limit:      unlimited" in shown
    # Options left out stay; a limit out of range is refused, naming it.
    again = json.loads(run(cli, "update", details["id"], "--name", "renamed", "--json"))
    assert (again["name"], again["max_parallel"], again["rpm_limit"]) == ("renamed", 2, 9)
    refused = CliRunner().invoke(cli, ["keys", "update", details["id"], "--max-parallel", "0"])
    assert refused.exit_code != 0
    assert "max_parallel must be between 1 and 1000000" in refused.output
    bad = CliRunner().invoke(cli, ["keys", "update", details["id"], "--tpm", "lots"])
    assert bad.exit_code == 2
    assert "neither a whole number nor 'none'" in bad.output

    async def updates() -> list[AuditEntry]:
        db = SqlDatabase.from_url(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
        try:
            entries = (await db.audit.query(AuditQuery()))[0]
            return [e for e in entries if e.action is AuditAction.KEY_UPDATE]
        finally:
            await db.dispose()

    renamed, limited = asyncio.run(updates())
    assert (limited.before, limited.after) == (
        {"quota_tokens": 1_000_000, "rpm_limit": 60, "tpm_limit": 1000, "max_parallel": 4},
        {"quota_tokens": None, "rpm_limit": 9, "tpm_limit": None, "max_parallel": 2},
    )
    assert renamed.after == {"name": "renamed"}


def test_model_limits_are_set_changed_and_removed_per_model(cli: click.Group) -> None:
    created = json.loads(
        run(cli, "create", "--name", "pm", "--model-limit", "demo:rpm=5,tpm=1000", "--json")
    )
    key = created["details"]
    assert key["model_limits"] == {
        DEMO_MODEL_ID: {"rpm_limit": 5, "tpm_limit": 1000, "quota_tokens": None}
    }

    # A model named gets exactly the limits given (a limit left out is none).
    run(cli, "update", key["id"], "--model-limit", f"{DEMO_MODEL_ID}:rpm=5")

    shown = run(cli, "show", key["id"])
    assert f"model_limits:   {DEMO_MODEL_ID}:rpm=5\n" in shown
    again = json.loads(run(cli, "update", key["id"], "--rpm", "7", "--json"))
    assert again["model_limits"] == {
        DEMO_MODEL_ID: {"rpm_limit": 5, "tpm_limit": None, "quota_tokens": None}
    }
    # A monthly quota on the model, 0 included (the model shut off for the key).
    run(cli, "update", key["id"], "--model-limit", f"{DEMO_MODEL_ID}:quota=0,tpm=9")
    assert f"model_limits:   {DEMO_MODEL_ID}:tpm=9,quota=0\n" in run(cli, "show", key["id"])
    removed = json.loads(run(cli, "update", key["id"], "--model-limit", "demo:none", "--json"))
    assert removed["model_limits"] == {}
    for bad, words in [("demo:rpm=x", "is not rpm=N"), ("nope:rpm=1", "Unknown model 'nope'")]:
        refused = CliRunner().invoke(cli, ["keys", "update", key["id"], "--model-limit", bad])
        assert refused.exit_code != 0
        assert words in refused.output


def test_a_budget_is_set_at_creation_changed_and_removed(cli: click.Group) -> None:
    created = json.loads(
        run(
            cli,
            "create",
            "--name",
            "b",
            "--budget-usd",
            "25.50",
            "--budget-window",
            "week",
            "--json",
        )
    )["details"]
    assert (created["budget_usd"], created["budget_window"]) == ("25.50", "week")

    changed = json.loads(
        run(cli, "update", created["prefix"], "--budget-usd", "0.000000001", "--json")
    )
    assert (changed["budget_usd"], changed["budget_window"]) == ("0.000000001", "week")
    window = json.loads(run(cli, "update", created["id"], "--budget-window", "day", "--json"))
    assert (window["budget_usd"], window["budget_window"]) == ("0.000000001", "day")
    removed = json.loads(run(cli, "update", created["id"], "--budget-usd", "none", "--json"))
    assert removed["budget_usd"] is None
    assert "budget_usd:     -" in run(cli, "show", created["id"])


def test_a_bad_budget_says_what_is_wrong(cli: click.Group) -> None:
    for bad in ("-1", "0.0000000001", "1000000.01", "ten"):
        result = CliRunner().invoke(cli, ["keys", "create", "--name", "b", "--budget-usd", bad])
        assert result.exit_code == 2, result.output
        assert "budget_usd must" in result.output
    result = CliRunner().invoke(cli, ["keys", "create", "--name", "b", "--budget-window", "year"])
    assert result.exit_code == 2
    assert "'year' is not one of 'day', 'week', 'month'" in result.output
