"""Alembic environment. The migrate API hands in an open connection (see
``llmserver.adapters.sql.migrate``); run without one, it opens its own async engine
from ``sqlalchemy.url``."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import Connection

from llmserver.adapters.sql._engine import create_engine
from llmserver.adapters.sql.models import metadata

config = context.config


def _report(*, step: Any, **_: Any) -> None:
    progress = config.attributes.get("progress")
    if progress is not None:
        verb = "upgraded to" if step.is_upgrade else "downgraded from"
        progress(f"{verb} {step.up_revision_id}: {step.up_revision.doc}")


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite can only ALTER through table copies; batch mode writes those.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        on_version_apply=_report,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_own_engine() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")

given = config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    asyncio.run(_run_own_engine())
