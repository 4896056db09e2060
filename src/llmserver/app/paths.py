"""Every route's path, spelled once: the routes, the completion lane, the OpenAPI document,
the access log's probe filter and the metrics' route labels all read them here."""

from __future__ import annotations

API = "/v1"
CHAT_COMPLETIONS = f"{API}/chat/completions"
COMPLETIONS = f"{API}/completions"
EMBEDDINGS = f"{API}/embeddings"
MESSAGES = f"{API}/messages"
"""Anthropic's Messages API."""
COUNT_TOKENS = f"{MESSAGES}/count_tokens"
RESPONSES = f"{API}/responses"
"""OpenAI's Responses API (the stateless part)."""
MODELS = f"{API}/models"
MODEL = f"{MODELS}/{{model_id:path}}"
MODEL_LABEL = f"{MODELS}/{{id}}"
"""The metrics' route label of every ``MODEL`` path (raw paths carry ids)."""

HEALTHZ = "/healthz"
READYZ = "/readyz"
METRICS = "/metrics"
ADMIN = "/admin"
UI = "/ui"
OPENAPI = "/openapi"
