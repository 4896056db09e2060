"""LLM Server: an OpenAI-compatible LLM API gateway and inference runtime."""

__version__ = "0.2.0"
