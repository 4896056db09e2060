from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

import click
import pytest
from click.testing import CliRunner

from integration.storage.key_cli import DEMO_MODELS, SECRET, key_cli, run
from llmserver.adapters.sql import SqlDatabase, migrate
from llmserver.app.composition import build_services
from llmserver.app.settings import Settings
from llmserver.cli import main
from llmserver.cli_keys import keys
from llmserver.domain.audit import AuditAction, AuditEntry, AuditQuery
from llmserver.domain.keys import KeyHasher


@pytest.fixture
def cli(tmp_path: Path) -> click.Group:
    return key_cli(tmp_path)


def test_create_prints_the_secret_once_and_list_never_does(cli: click.Group) -> None:
    out = run(
        cli,
        "create",
        "--name",
        "ci",
        "--role",
        "user",
        "--quota-tokens",
        "5000",
        "--rpm",
        "7",
        "--models",
        "demo",
        "--expires",
        "30d",
    )
    secret = next(line for line in out.splitlines() if line.startswith("llms_"))
    prefix = secret.split("_")[1]

    listed = run(cli, "list")
    shown = run(cli, "show", prefix)

    assert secret not in listed
    assert secret not in shown
    assert prefix in listed
    assert "quota_tokens:   5000" in shown
    # The alias is stored as the id requests are checked against.
    assert "allowed_models: demo-tiny-llama" in shown
    assert "state:          active" in shown
    assert "quota_tokens:   unlimited" in run(cli, "create", "--name", "root", "--role", "admin")


def test_json_output_and_role_defaults(cli: click.Group) -> None:
    created = json.loads(run(cli, "create", "--name", "play", "--role", "playground", "--json"))

    details = created["details"]
    assert (details["role"], details["quota_tokens"], details["rpm_limit"]) == (
        "playground",
        100_000,
        10,
    )
    assert details["expires_at"] is None
    assert KeyHasher(SECRET).hash(created["key"])  # a well-formed key under the secret
    listed = json.loads(run(cli, "list", "--json"))
    assert [k["id"] for k in listed] == [details["id"]]
    assert "key" not in listed[0]


def test_revoke_then_show(cli: click.Group) -> None:
    created = json.loads(run(cli, "create", "--name", "old", "--json"))

    out = run(cli, "revoke", created["details"]["id"])
    shown = json.loads(run(cli, "show", created["details"]["prefix"], "--json"))

    assert out.startswith(f"revoked {created['details']['id']}")
    assert shown["state"] == "revoked"
    assert shown["revoked_at"] is not None


def test_rotate_prints_the_new_secret_once_and_ends_the_old_key(cli: click.Group) -> None:
    created = json.loads(run(cli, "create", "--name", "svc", "--rpm", "7", "--json"))
    old = created["details"]

    result = CliRunner().invoke(cli, ["keys", "rotate", old["prefix"], "--grace", "2h"])
    assert result.exit_code == 0, result.output
    secret = next(line for line in result.stdout.splitlines() if line.startswith("llms_"))
    assert secret != created["key"]
    assert f"old key {old['id']} ({old['prefix']}) stops working at" in result.stderr
    new_prefix = secret.split("_")[1]
    new = json.loads(run(cli, "show", new_prefix, "--json"))
    assert (new["name"], new["rpm_limit"], new["state"]) == ("svc", 7, "active")
    still = json.loads(run(cli, "show", old["id"], "--json"))
    assert still["state"] == "active"
    assert still["expires_at"] is not None

    now = json.loads(run(cli, "rotate", new_prefix, "--grace", "0", "--json"))
    assert now["replaced"]["state"] == "revoked"
    assert now["key"].startswith("llms_")
    refused = CliRunner().invoke(cli, ["keys", "rotate", new_prefix])
    assert refused.exit_code != 0
    assert "only an active key can be rotated" in refused.output


def test_changes_made_with_the_command_are_audited_as_cli(cli: click.Group, tmp_path: Path) -> None:
    created = json.loads(run(cli, "create", "--name", "audited", "--rpm", "5", "--json"))
    key_id = created["details"]["id"]
    rotated = json.loads(run(cli, "rotate", key_id, "--grace", "0", "--json"))
    run(cli, "revoke", rotated["details"]["id"])
    run(cli, "revoke", rotated["details"]["id"])  # again: nothing changes, nothing recorded

    async def trail() -> list[AuditEntry]:
        db = SqlDatabase.from_url(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
        try:
            return list((await db.audit.query(AuditQuery()))[0])
        finally:
            await db.dispose()

    entries = asyncio.run(trail())
    assert [(e.action, e.target) for e in entries] == [
        (AuditAction.KEY_REVOKE, rotated["details"]["id"]),
        (AuditAction.KEY_ROTATE, key_id),
        (AuditAction.KEY_CREATE, key_id),
    ]
    assert {(e.actor_key_id, e.actor_prefix, e.request_id) for e in entries} == {
        ("cli", "cli", None)
    }
    assert entries[1].after is not None
    assert entries[1].after["replaced_by"] == rotated["details"]["id"]
    assert entries[2].after is not None
    assert entries[2].after["rpm_limit"] == 5
    assert not [e for e in entries if created["key"] in repr(e) or rotated["key"] in repr(e)]


def test_usage_lists_recorded_periods(cli: click.Group, tmp_path: Path) -> None:
    created = json.loads(run(cli, "create", "--name", "u", "--json"))
    key_id = created["details"]["id"]

    async def record() -> None:
        db = SqlDatabase.from_url(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
        await db.usage.settle(key_id, "2026-03", 0, 42)
        await db.usage.settle(key_id, "2026-04", 0, 8, cache_hit=True)
        await db.dispose()

    asyncio.run(record())

    table = run(cli, "usage", created["details"]["prefix"])
    march = json.loads(run(cli, "usage", "--period", "2026-03", "--json"))

    assert "2026-03" in table
    assert "2026-04" in table
    assert march == [
        {
            "key_id": key_id,
            "period": "2026-03",
            "used_tokens": 42,
            "reserved_tokens": 0,
            "requests": 1,
            "cache_hits": 0,
        },
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "nope"], "No API key with id or prefix 'nope'"),
        (["revoke", "nope"], "No API key"),
        (["create", "--name", "x", "--expires", "soon"], "Invalid duration"),
        (["create", "--name", "x", "--expires", "3000000d"], "too long: at most 36500d"),
        (["create", "--name", "x", "--models", "demo,no-such-model"], "'no-such-model'"),
        (["create", "--name", "x", "--quota-tokens", "9" * 30], "quota_tokens must be"),
        (["usage", "--period", "2026-3"], "expected YYYY-MM"),
    ],
)
def test_errors_are_reported_without_a_traceback(
    cli: click.Group, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(cli, ["keys", *args])

    assert result.exit_code == 1
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def test_unknown_models_are_kept_when_allowed(cli: click.Group) -> None:
    created = json.loads(
        run(
            cli,
            "create",
            "--name",
            "x",
            "--models",
            "demo,later",
            "--allow-unknown-models",
            "--json",
        )
    )

    assert created["details"]["allowed_models"] == ["demo-tiny-llama", "later"]


def test_the_command_resolves_against_the_configured_models(tmp_path: Path) -> None:
    """``llmserver keys`` reads the models ``serve`` would: the profile and the models file."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}"
    asyncio.run(migrate.upgrade(url))
    models_file = tmp_path / "models.toml"
    models_file.write_text(
        '[[models]]\nid = "remote-model"\nbackend = "http"\nsource = "http://127.0.0.1:9"\n'
        'aliases = ["remote"]\n'
    )
    env = {
        "LLMSERVER_DATABASE_URL": url,
        "LLMSERVER_SERVER_SECRET": SECRET,
        "LLMSERVER_PROFILE": "demo",
        "LLMSERVER_MODELS_FILE": str(models_file),
    }
    args = ["keys", "create", "--name", "x", "--models", "remote,demo", "--json"]

    created = CliRunner().invoke(main, args, env=env)
    models_file.write_text("[[models]]\nid = 1\n")
    broken = CliRunner().invoke(main, args, env=env)

    assert created.exit_code == 0, created.output
    details = json.loads(created.stdout)["details"]
    assert details["allowed_models"] == ["remote-model", "demo-tiny-llama"]
    assert broken.exit_code == 1
    assert "models.toml" in broken.stderr
    assert "Traceback" not in broken.output


def test_an_unmigrated_database_points_at_migrate(tmp_path: Path) -> None:
    @click.group()
    @click.pass_context
    def root(ctx: click.Context) -> None:
        ctx.obj = SimpleNamespace(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}",
            server_secret=SECRET,
            models=DEMO_MODELS,
        )

    root.add_command(keys)
    result = CliRunner().invoke(root, ["keys", "list"])

    assert result.exit_code == 1
    assert "llmserver migrate" in result.stderr


def test_a_key_the_command_creates_authenticates_on_a_server_composed_on_its_database(
    cli: click.Group, tmp_path: Path
) -> None:
    """The command and the server share one composition root: same stores, same hashing."""
    created = json.loads(run(cli, "create", "--name", "served", "--json"))
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}",
        server_secret=SECRET,
        profile="none",
    )

    async def authenticated_key_id() -> str:
        composed = build_services(settings)
        try:
            principal = await composed.services.gateway.authenticate(created["key"])
        finally:
            await composed.database.dispose()
        return principal.key.id

    assert asyncio.run(authenticated_key_id()) == created["details"]["id"]


def test_usage_says_what_a_running_single_process_server_has_not_written_yet(
    cli: click.Group,
) -> None:
    table = CliRunner().invoke(cli, ["keys", "usage"])
    as_json = CliRunner().invoke(cli, ["keys", "usage", "--json"])
    helped = CliRunner().invoke(cli, ["keys", "usage", "--help"])

    assert "LLMSERVER_STATE_FLUSH_MS" in table.stderr
    assert as_json.stderr == ""  # JSON output stays machine-readable
    assert "LLMSERVER_STATE_FLUSH_MS" in helped.stdout
