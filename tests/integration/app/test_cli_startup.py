"""The CLI imports only what the command it runs uses.

Every command, ``llmserver --help`` included, took seconds: the SQL stores (SQLAlchemy,
advanced-alchemy and, through it, Litestar) were imported at start-up, and ``keys`` imported
the whole web app for its model list; then ``keys`` still spent a second importing
advanced-alchemy (Litestar, numpy) for the stores' column type and key repository. Checked
in a fresh interpreter by what lands in ``sys.modules``: a timed assertion would fail on a
slow machine, not on a regression.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmserver.adapters.sql import migrate

# Runs the command as the ``llmserver`` script does, then prints the modules it loaded.
_PROBE = """
import json, sys
from llmserver.cli import main
try:
    main.main(sys.argv[1:], prog_name="llmserver")
except SystemExit as exc:
    assert not exc.code, exc.code
print(json.dumps(sorted(sys.modules)))
"""

# The web app and the inference stack: no command but ``serve`` and ``demo-model`` needs them.
_SERVER_ONLY = {
    "torch",
    "transformers",
    "tokenizers",
    "uvicorn",
    "structlog",
    "llmserver.app.factory",
}


def _loaded(cwd: Path, *args: str, **env: str) -> set[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LLMSERVER_")}
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        cwd=cwd,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_help_imports_neither_the_web_app_nor_the_stores(tmp_path: Path) -> None:
    loaded = _loaded(tmp_path, "--help")
    assert "click" in loaded
    assert (
        loaded & (_SERVER_ONLY | {"litestar", "sqlalchemy", "advanced_alchemy", "alembic"}) == set()
    )


def test_keys_list_imports_its_stores_but_not_the_web_app(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}"
    asyncio.run(migrate.upgrade(url))
    loaded = _loaded(
        tmp_path,
        "keys",
        "list",
        LLMSERVER_DATABASE_URL=url,
        LLMSERVER_SERVER_SECRET="cli-startup-secret-0123456789-abcdefgh",
    )
    assert "llmserver.adapters.sql.keys" in loaded  # it did build its stores
    # The stores need SQLAlchemy alone: advanced-alchemy (which loads Litestar and numpy)
    # is left to migration 0001, and the app, the server and migrations (alembic) stay out.
    heavy = {"advanced_alchemy", "litestar", "numpy", "alembic"}
    assert loaded & (_SERVER_ONLY | heavy) == set()


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--workers", "2"], {}, "LLMSERVER_REDIS_URL"),
        ([], {"LLMSERVER_WORKERS": "3"}, "LLMSERVER_REDIS_URL"),
        (
            ["--workers", "2"],
            {"LLMSERVER_REDIS_URL": "redis://127.0.0.1:1/0", "LLMSERVER_DEPLOYMENT": "single"},
            "LLMSERVER_DEPLOYMENT",
        ),
        ([], {"LLMSERVER_WORKERS": "0"}, "LLMSERVER_WORKERS"),
    ],
)
def test_serve_refuses_workers_that_could_not_share_limits(
    tmp_path: Path, args: list[str], env: dict[str, str], named: str
) -> None:
    """Single-process servers keep quotas in their own memory and claim the database, so
    several workers must be replicas: refused at start, naming the variable to set."""
    refusal = _serve_refusal(tmp_path, ["-m", "llmserver.cli", "serve", "--port", "1", *args], env)
    assert named in refusal


def test_serve_refuses_tracing_without_the_otel_extra(tmp_path: Path) -> None:
    """As if installed without the extra: the SDK's modules cannot be imported."""
    without_sdk = (
        "import sys; sys.modules['opentelemetry.sdk'] = None\n"
        "from llmserver.cli import main\n"
        "main.main(['serve', '--port', '1'], prog_name='llmserver')\n"
    )
    refusal = _serve_refusal(
        tmp_path, ["-c", without_sdk], {"LLMSERVER_OTEL_ENDPOINT": "http://127.0.0.1:4318"}
    )
    assert "LLMSERVER_OTEL_ENDPOINT" in refusal
    assert "llmserver[otel]" in refusal


def _serve_refusal(cwd: Path, python_args: list[str], env: dict[str, str]) -> str:
    """What ``python *python_args``, a ``serve`` that must refuse to start, writes to stderr
    with ``env`` over a valid database and server secret: it has to exit 1 before serving."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LLMSERVER_")}
    result = subprocess.run(
        [sys.executable, *python_args],
        cwd=cwd,
        env=clean
        | env
        | {
            "LLMSERVER_DATABASE_URL": f"sqlite+aiosqlite:///{cwd / 'serve.db'}",
            "LLMSERVER_SERVER_SECRET": "cli-startup-secret-0123456789-abcdefgh",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    return result.stderr
