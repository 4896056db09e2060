"""One typed settings object, read from the environment once and passed in.

Sources, later wins: ``.env``, ``.env.local``, then real ``LLMSERVER_*`` environment
variables. Nothing reads settings at import time; ``load_settings()`` is called by the CLI
(and by tests with an explicit mapping).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import msgspec

from llmserver.domain.keys import MIN_SERVER_SECRET_CHARS
from llmserver.domain.registry import PROFILES

PREFIX = "LLMSERVER_"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"
    TEST = "test"


class LogFormat(StrEnum):
    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


class RedisFailurePolicy(StrEnum):
    FAIL_OPEN = "fail_open"
    FAIL_CLOSED = "fail_closed"


class Deployment(StrEnum):
    AUTO = "auto"
    SINGLE = "single"
    REPLICAS = "replicas"


class SqliteWriter(StrEnum):
    PROCESS = "process"
    INLINE = "inline"


class CacheScope(StrEnum):
    """Whose answers a cached response is: each API key's own, or every key's."""

    KEY = "key"
    GLOBAL = "global"


class Settings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Every setting, with its default. The README's configuration table mirrors this."""

    env: Environment = Environment.DEVELOPMENT
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    server_secret: str | None = None
    database_url: str = "sqlite+aiosqlite:///var/llmserver.db"
    redis_url: str | None = None
    hot_cache: bool = True
    redis_failure_policy: RedisFailurePolicy = RedisFailurePolicy.FAIL_OPEN
    deployment: Deployment = Deployment.AUTO
    state_flush_ms: int = 200
    sqlite_writer: SqliteWriter = SqliteWriter.PROCESS
    profile: str = "demo"
    models_file: str | None = None
    demo_model_dir: str = "var/models/demo-tiny-llama"
    torch_threads: int | None = None
    max_batch_size: int = 8
    max_queue: int = 64
    max_n: int = 4
    """The most choices (``n``) one completion request may ask for (OpenAI allows 128)."""
    embedding_batch_rows: int = 64
    request_timeout_s: float = 300.0
    routing_max_attempts: int = 3
    routing_backoff_s: float = 0.05
    routing_max_wait_s: float = 5.0
    routing_failure_threshold: int = 3
    routing_cooldown_s: float = 10.0
    routing_connect_timeout_s: float = 5.0
    routing_first_byte_timeout_s: float = 60.0
    routing_seed: int | None = None
    prefix_cache_mb: int = 256
    prefill_chunk_tokens: int = 32
    cache_enabled: bool = True
    cache_ttl_s: int = 86_400
    cache_scope: CacheScope = CacheScope.KEY
    cache_hits_count_against_quota: bool = False
    cache_max_rows: int | None = None
    max_body_bytes: int = 1_048_576
    body_read_timeout_s: float = 30.0
    log_format: LogFormat = LogFormat.AUTO
    log_level: str = "INFO"
    log_bodies: bool = False
    log_flush_ms: int = 200
    log_batch_rows: int = 500
    log_queue_max: int = 50_000
    log_retention_days: int | None = None
    ui_key: str | None = None
    ui_dist_dir: str = "frontend/dist"
    cors_origins: tuple[str, ...] = ()
    metrics_require_key: bool = False
    key_cache_ttl_s: float = 1.0
    bootstrap_admin: bool = False
    shutdown_drain_s: float = 30.0
    otel_endpoint: str | None = None
    otel_service_name: str = "llmserver"

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str, str]] = [
            (1 <= self.port <= 65535, "port", "an integer from 1 to 65535"),
            (self.workers >= 1, "workers", "an integer >= 1"),
            (self.profile in PROFILES, "profile", f"one of {', '.join(PROFILES)}"),
            (self.max_batch_size >= 1, "max_batch_size", "an integer >= 1"),
            (self.max_queue >= 1, "max_queue", "an integer >= 1"),
            (1 <= self.max_n <= 128, "max_n", "an integer from 1 to 128"),
            (self.embedding_batch_rows >= 1, "embedding_batch_rows", "an integer >= 1"),
            (self.request_timeout_s > 0, "request_timeout_s", "a number of seconds > 0"),
            (self.routing_max_attempts >= 1, "routing_max_attempts", "an integer >= 1"),
            (self.routing_backoff_s >= 0, "routing_backoff_s", "a number of seconds >= 0"),
            (self.routing_max_wait_s >= 0, "routing_max_wait_s", "a number of seconds >= 0"),
            (self.routing_failure_threshold >= 1, "routing_failure_threshold", "an integer >= 1"),
            (self.routing_cooldown_s >= 0, "routing_cooldown_s", "a number of seconds >= 0"),
            (
                self.routing_connect_timeout_s > 0,
                "routing_connect_timeout_s",
                "a number of seconds > 0",
            ),
            (
                self.routing_first_byte_timeout_s > 0,
                "routing_first_byte_timeout_s",
                "a number of seconds > 0",
            ),
            (self.prefix_cache_mb >= 0, "prefix_cache_mb", "an integer >= 0 (0: off)"),
            (self.prefill_chunk_tokens >= 1, "prefill_chunk_tokens", "an integer >= 1"),
            (self.cache_ttl_s >= 1, "cache_ttl_s", "an integer number of seconds >= 1"),
            (self.max_body_bytes >= 1024, "max_body_bytes", "an integer >= 1024"),
            (self.body_read_timeout_s > 0, "body_read_timeout_s", "a number of seconds > 0"),
            (self.log_flush_ms >= 1, "log_flush_ms", "an integer >= 1"),
            (self.state_flush_ms >= 1, "state_flush_ms", "an integer >= 1"),
            (self.log_batch_rows >= 1, "log_batch_rows", "an integer >= 1"),
            (self.log_queue_max >= self.log_batch_rows, "log_queue_max", ">= log_batch_rows"),
            (
                self.log_level.upper() in {"DEBUG", "INFO", "WARNING", "ERROR"},
                "log_level",
                "one of DEBUG, INFO, WARNING, ERROR",
            ),
            (
                self.database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")),
                "database_url",
                "a sqlite+aiosqlite:/// or postgresql+asyncpg:// URL",
            ),
            (
                self.redis_url is None or self.redis_url.startswith(("redis://", "rediss://")),
                "redis_url",
                "a redis:// or rediss:// URL",
            ),
            (
                self.torch_threads is None or self.torch_threads >= 1,
                "torch_threads",
                "an integer >= 1",
            ),
            (
                self.otel_endpoint is None
                or self.otel_endpoint.startswith(("http://", "https://")),
                "otel_endpoint",
                "an OTLP/HTTP URL, http:// or https:// (e.g. http://localhost:4318)",
            ),
            (bool(self.otel_service_name.strip()), "otel_service_name", "a non-empty name"),
            (
                self.cache_max_rows is None or self.cache_max_rows >= 1,
                "cache_max_rows",
                "an integer >= 1 (unset: no cap)",
            ),
            (
                self.log_retention_days is None or self.log_retention_days >= 1,
                "log_retention_days",
                "an integer number of days >= 1 (unset: keep forever)",
            ),
            (self.shutdown_drain_s >= 0, "shutdown_drain_s", "a number of seconds >= 0"),
            (self.key_cache_ttl_s >= 0, "key_cache_ttl_s", "a number of seconds >= 0"),
        ]
        for ok, field, accepted in checks:
            if not ok:
                raise SettingsError(field, getattr(self, field), accepted)

    @property
    def single_process(self) -> bool:
        """Whether this process is the only server on its database (``auto``: no Redis)."""
        if self.deployment is Deployment.AUTO:
            return self.redis_url is None
        return self.deployment is Deployment.SINGLE

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def require_server_secret(self) -> str:
        """The key-hashing secret; refuses a missing or weak one outside tests."""
        secret = self.server_secret
        if secret is None or len(secret) < MIN_SERVER_SECRET_CHARS:
            if self.env is Environment.TEST and secret is None:
                return "test-only-server-secret-not-for-production-use"
            raise SettingsError(
                "server_secret",
                "<missing>" if secret is None else "<too short>",
                f"a random string of at least {MIN_SERVER_SECRET_CHARS} characters "
                "(`make run` generates one into .env.local)",
            )
        return secret


class SettingsError(ValueError):
    def __init__(self, field: str, value: object, accepted: str) -> None:
        self.variable = PREFIX + field.upper()
        shown = value if field not in {"server_secret", "ui_key"} else "<hidden>"
        super().__init__(f"invalid {self.variable}={shown!r}: expected {accepted}")


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a dotenv file: KEY=VALUE lines, # comments, optional quotes."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        name = name.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def _field_types() -> dict[str, Any]:
    return {f.name: f.type for f in msgspec.structs.fields(Settings)}


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if get_origin(tp) in (Union, UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return args[0], len(args) < len(get_args(tp))
    return tp, False


def _accepted(tp: Any) -> str:
    base, _ = _unwrap_optional(tp)
    if isinstance(base, type) and issubclass(base, StrEnum):
        return "one of " + ", ".join(m.value for m in base)
    if base is bool:
        return "true or false"
    if base is int:
        return "an integer"
    if base is float:
        return "a number"
    if get_origin(base) is tuple:
        return "a comma-separated list"
    return "a string"


def _convert(raw: str, tp: Any) -> Any:
    base, optional = _unwrap_optional(tp)
    if optional and raw.strip() == "":
        return None
    if get_origin(base) is tuple:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if base is bool:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ValueError(raw)
    if base is int:
        return int(raw.replace("_", ""))
    if base is float:
        return float(raw)
    if isinstance(base, type) and issubclass(base, StrEnum):
        return base(raw.strip().lower())
    return raw


def load_settings(
    environ: Mapping[str, str] | None = None, *, root: Path | None = None
) -> Settings:
    """Build settings from .env, .env.local and the environment (later wins)."""
    base = Path.cwd() if root is None else root
    merged: dict[str, str] = {}
    merged.update(read_env_file(base / ".env"))
    merged.update(read_env_file(base / ".env.local"))
    merged.update(os.environ if environ is None else environ)
    types = _field_types()
    values: dict[str, Any] = {}
    for name, raw in merged.items():
        if not name.startswith(PREFIX):
            continue
        field = name[len(PREFIX) :].lower()
        if field not in types:
            continue  # reported by unknown_variables(); tests use LLMSERVER_TEST_* freely
        try:
            values[field] = _convert(raw, types[field])
        except ValueError:
            raise SettingsError(field, raw, _accepted(types[field])) from None
    return Settings(**values)


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """``LLMSERVER_*`` names that match no setting (likely typos), for a start-up warning."""
    names = _field_types()
    source = os.environ if environ is None else environ
    return sorted(
        name
        for name in source
        if name.startswith(PREFIX)
        and not name.startswith(PREFIX + "TEST_")
        and name[len(PREFIX) :].lower() not in names
    )
