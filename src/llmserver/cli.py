"""The ``llmserver`` command: serve, migrate, keys, teams, demo-model, init-env."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from llmserver import __version__
from llmserver.app.settings import Settings, SettingsError, load_settings, unknown_variables

if TYPE_CHECKING:
    from llmserver.domain.registry import ModelRegistry


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


class _Context:
    """What subcommands read lazily from the environment (``ctx.obj``)."""

    @property
    def settings(self) -> Settings:
        return _settings()

    @property
    def database_url(self) -> str:
        return self.settings.database_url

    @property
    def server_secret(self) -> str:
        try:
            return self.settings.require_server_secret()
        except SettingsError as exc:
            raise click.ClickException(str(exc)) from None

    @property
    def models(self) -> ModelRegistry:
        """The registry ``serve`` would build (profile and models file), without loading any."""
        from llmserver.app.model_specs import model_specs
        from llmserver.domain.registry import ModelRegistry

        try:
            return ModelRegistry(model_specs(self.settings))
        except ValueError as exc:  # a broken models file, or a name used twice
            raise click.ClickException(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="llmserver")
@click.pass_context
def main(ctx: click.Context) -> None:
    """LLM Server: an OpenAI-compatible gateway with keys, quotas, rate limits and a cache.

    Configuration comes from LLMSERVER_* environment variables, .env and .env.local
    (see .env.example). Start with `llmserver init-env`, `llmserver migrate`,
    `llmserver serve`.
    """
    ctx.obj = _Context()


@main.command()
@click.option("--host", default=None, help="Bind address (default: LLMSERVER_HOST).")
@click.option("--port", type=int, default=None, help="Port (default: LLMSERVER_PORT).")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Server processes sharing the port (default: LLMSERVER_WORKERS, 1). More than one "
    "runs them as replicas and needs LLMSERVER_REDIS_URL. Each worker loads its own copy of "
    "every model: cheap for http models, N times the memory for torch models.",
)
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Run the API server (one process unless --workers; or several behind nginx)."""
    import uvicorn

    from llmserver.app.composition import require_tracing_installed

    settings = _settings()
    try:
        settings.require_server_secret()
        require_tracing_installed(settings)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    for name in unknown_variables():
        click.echo(f"warning: {name} is not a known setting (typo?)", err=True)
    options: dict[str, Any] = {
        "host": host or settings.host,
        "port": port or settings.port,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": int(settings.shutdown_drain_s),
        "server_header": False,
        # A response's head goes out in one write with its body (the module says why).
        "http": "llmserver.app.server_protocol:HeadWithBodyProtocol",
    }
    count = workers or settings.workers
    if count > 1:
        _serve_workers(settings, count, options)
        return

    from llmserver.app.factory import asgi_app

    # uvicorn drains in-flight requests on SIGTERM/SIGINT, then re-raises the signal under the
    # handlers it found at start. Finding no-op handlers, that re-raise returns, and a clean,
    # drained shutdown exits 0 (as process supervisors expect) instead of dying by signal.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    uvicorn.run(asgi_app(settings), **options)


def _serve_workers(settings: Settings, count: int, options: dict[str, Any]) -> None:
    """Run ``count`` uvicorn worker processes on one socket, as replicas of one another.

    Each worker is a whole server: a single-process server keeps quota and cache state in
    its memory and claims the database for itself, so workers must run as replicas, which
    share the RPM limiter through Redis and every quota decision through the database.
    """
    if settings.redis_url is None:
        raise click.ClickException(
            f"--workers {count} runs the workers as replicas, which share rate limits "
            "through Redis: set LLMSERVER_REDIS_URL (or run one worker)"
        )
    if settings.single_process:
        raise click.ClickException(
            f"--workers {count} needs LLMSERVER_DEPLOYMENT=replicas or auto, not single: "
            "a single-process server keeps quotas in its own memory"
        )
    from uvicorn import Config
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    config = Config(
        "llmserver.app.factory:app_from_environment", factory=True, workers=count, **options
    )
    # prometheus-client keeps each worker's values in files under PROMETHEUS_MULTIPROC_DIR
    # (read when it is imported, so set before the workers start) and /metrics merges them.
    # The directory must start empty: a file left by an earlier run would be counted again.
    # A user's own directory is theirs to manage; otherwise this run gets a private one,
    # removed when it ends.
    with contextlib.ExitStack() as stack:
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            directory = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="llmserver-metrics-")
            )
            stack.callback(os.environ.pop, "PROMETHEUS_MULTIPROC_DIR", None)
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        # The supervisor forwards SIGTERM/SIGINT to every worker, each drains its requests
        # as a lone server does, and the supervisor returns once all have exited.
        supervisor = Multiprocess(config, sockets=[config.bind_socket()])
        supervisor.run()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        # The supervisor stops every worker when one cannot start, and returns as on SIGTERM.
        sys.exit(STARTUP_FAILURE)


@main.command()
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def migrate(revision: str) -> None:
    """Upgrade the database schema (creates the SQLite file if needed)."""
    from llmserver.adapters.sql.migrate import upgrade

    settings = _settings()
    _ensure_sqlite_dir(settings)
    if asyncio.run(upgrade(settings.database_url, revision, progress=_progress)):
        click.echo(f"database at {revision}")


@main.command()
@click.option("--revision", default="-1", show_default=True, help="Target revision.")
def downgrade(revision: str) -> None:
    """Downgrade the database schema."""
    from llmserver.adapters.sql.migrate import downgrade as run_downgrade

    asyncio.run(run_downgrade(_settings().database_url, revision, progress=_progress))


@main.command()
@click.option("-m", "--message", required=True, help="What the migration changes.")
def revision(message: str) -> None:
    """Autogenerate a new migration from the models."""
    from llmserver.adapters.sql.migrate import revision as make_revision

    settings = _settings()
    _ensure_sqlite_dir(settings)
    asyncio.run(make_revision(settings.database_url, message))


def _progress(message: str) -> None:
    click.echo(message, err=True)


def _ensure_sqlite_dir(settings: Settings) -> None:
    if settings.is_sqlite:
        path = settings.database_url.split(":///", 1)[1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)


@main.group("demo-model")
def demo_model() -> None:
    """The offline demo model (random weights: it emits random text)."""


@demo_model.command("build")
@click.option("--dir", "target", default=None, help="Target directory (LLMSERVER_DEMO_MODEL_DIR).")
@click.option("--size", type=click.Choice(["tiny", "bench"]), default="tiny", show_default=True)
def demo_model_build(target: str | None, size: str) -> None:
    """Build the demo model offline, deterministically (skipped when already built)."""
    from llmserver.adapters.inference.demo_model import build_demo_model

    path = Path(target or _settings().demo_model_dir)
    built = build_demo_model(path, size=size, progress=_progress)  # type: ignore[arg-type]
    click.echo(str(built))


@main.command("init-env")
@click.option("--path", default=".env.local", show_default=True)
def init_env(path: str) -> None:
    """Create .env.local with a fresh server secret if none is configured yet."""
    from llmserver.domain.keys import generate_server_secret

    target = Path(path)
    existing = target.read_text() if target.exists() else ""
    if "LLMSERVER_SERVER_SECRET=" in existing:
        click.echo(f"{path}: server secret already set")
        return
    with target.open("a") as handle:
        if existing and not existing.endswith("\n"):
            handle.write("\n")
        handle.write(f"LLMSERVER_SERVER_SECRET={generate_server_secret()}\n")
    target.chmod(0o600)
    click.echo(f"{path}: generated LLMSERVER_SERVER_SECRET")


def _register_groups() -> None:
    from llmserver.cli_keys import keys
    from llmserver.cli_logs import logs
    from llmserver.cli_teams import teams
    from llmserver.cli_usage import usage

    main.add_command(keys)
    main.add_command(teams)
    main.add_command(logs)
    main.add_command(usage)


_register_groups()


def run(argv: list[str] | None = None) -> Any:
    return main.main(args=argv, prog_name="llmserver")


if __name__ == "__main__":
    sys.exit(run())
