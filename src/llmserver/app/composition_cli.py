"""The composition of the CLI's administration commands (``llmserver keys``, ``teams``,
``logs``): their stores straight on the database, beside a running server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from llmserver.adapters.clock import SystemClock
from llmserver.app.composition import sql_database
from llmserver.domain.key_admin import KeyAdmin
from llmserver.domain.keys import KeyHasher
from llmserver.domain.ports import AuditLog, RequestLogReader, RequestLogRetention
from llmserver.domain.registry import ModelRegistry
from llmserver.domain.team_admin import TeamAdmin


class KeySettings(Protocol):
    """What ``llmserver keys`` reads (the CLI's lazily loaded settings)."""

    @property
    def database_url(self) -> str: ...

    @property
    def server_secret(self) -> str: ...

    @property
    def models(self) -> ModelRegistry:
        """The models the server is configured with: keys name them by id."""


@dataclass(frozen=True, slots=True)
class KeyServices:
    key_admin: KeyAdmin
    team_admin: TeamAdmin
    audit: AuditLog
    close: Callable[[], Awaitable[None]]


def build_key_services(settings: KeySettings) -> KeyServices:
    """Key administration straight on the database, as another process next to a server.

    Its usage store is the SQL one even when a server writes usage behind: ``keys usage``
    then shows what that server has flushed (see the command's help).
    """
    database = sql_database(settings.database_url)
    hasher = KeyHasher(settings.server_secret)
    db = database
    clock = SystemClock()
    admin = KeyAdmin(
        db.keys, db.usage, hasher, clock, settings.models, db.budget, db.model_quota, db.teams
    )
    teams = TeamAdmin(db.teams, clock, usage=db.usage, budget=db.budget)
    return KeyServices(admin, teams, database.audit, database.dispose)


@dataclass(frozen=True, slots=True)
class LogServices:
    logs: RequestLogReader
    retention: RequestLogRetention
    close: Callable[[], Awaitable[None]]


def build_log_services(database_url: str) -> LogServices:
    """``llmserver logs``: the request log's reader and retention, straight on the database."""
    database = sql_database(database_url)
    return LogServices(database.logs, database.retention, database.dispose)
