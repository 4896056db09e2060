"""structlog's configuration: JSON lines on stdout by default; human-readable console output
when attached to a TTY (or ``LLMSERVER_LOG_FORMAT=console``)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from llmserver.app.settings import LogFormat


def uses_console(fmt: LogFormat) -> bool:
    return fmt is LogFormat.CONSOLE or (fmt is LogFormat.AUTO and sys.stdout.isatty())


def configure_logging(fmt: LogFormat, level: str) -> None:
    console = uses_console(fmt)
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=False,
    )
