"""OpenAI's Responses API (``/v1/responses``), its stateless part, translated onto the
gateway's completion use case: same keys, limits, cache and logs as chat completions."""
