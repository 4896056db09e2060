"""LLM Server: an OpenAI-compatible LLM API gateway and inference runtime."""

__version__ = "0.1.0"
