"""The admin API (admin role only): keys, usage, request logs, roles."""

from llmserver.app.routes.admin.routes import admin_router

__all__ = ["admin_router"]
