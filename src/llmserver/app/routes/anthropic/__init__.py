"""Anthropic's Messages API (``/v1/messages``, ``/v1/messages/count_tokens``), translated
onto the gateway's completion use case: same keys, limits, cache and logs as OpenAI's."""
