"""What an ``http`` model's upstream is sent: an OpenAI chat or text completion request,
with the headers every request to it carries."""

from __future__ import annotations

import os
from typing import Any

from llmserver.adapters.inference.answer_schema import response_format
from llmserver.adapters.inference.http_tools import add_tools, upstream_message
from llmserver.domain.inference import GenerationParams, Prompt
from llmserver.domain.registry import ModelSpec


def api_base(source: str) -> str:
    """An upstream's OpenAI API base: its ``source``, ending in ``/v1``."""
    base = source.rstrip("/")
    return base if base.endswith("/v1") else f"{base}/v1"


def upstream_headers(spec: ModelSpec) -> bytes:
    """The headers of every request to ``spec``'s upstream, whole lines, with its API key
    read from the environment variable ``api_key_env`` (RuntimeError if it is unset)."""
    headers = b"Accept: application/json\r\nContent-Type: application/json\r\n"
    if spec.api_key_env:
        key = os.environ.get(spec.api_key_env)
        if not key:
            raise RuntimeError(
                f"model {spec.id!r} reads its upstream API key from the environment "
                f"variable {spec.api_key_env}, which is not set"
            )
        headers += b"Authorization: Bearer " + key.encode("latin-1") + b"\r\n"
    return headers


def upstream_request(
    upstream_model: str, prompt: Prompt, params: GenerationParams, *, stream: bool
) -> tuple[str, dict[str, Any]]:
    """The upstream's path and body for ``prompt``: chat or text completions, with the
    parameters after the model's defaults, each optional one only when set."""
    body: dict[str, Any] = {
        "model": upstream_model,
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    if params.stop:
        body["stop"] = list(params.stop)
    if params.seed is not None:
        body["seed"] = params.seed
    if params.top_k is not None:
        # Not OpenAI's own parameter, so sent only when asked for: vLLM, Ollama and
        # llama.cpp read it; a hosted API that does not answers why in its 400.
        body["top_k"] = params.top_k
    if params.constraint is not None:
        body["response_format"] = response_format(params.constraint)
    if params.n > 1:
        body["n"] = params.n
    if prompt.messages is not None:
        body["messages"] = [
            {"role": m.role, "content": m.content}
            if not m.tool_calls and m.tool_call_id is None
            else upstream_message(m)
            for m in prompt.messages
        ]
        if prompt.tools is not None:
            add_tools(body, prompt.tools)
        if params.logprobs is not None:  # chat asks with a flag and a count
            body |= {"logprobs": True, "top_logprobs": params.logprobs}
        return "/chat/completions", body
    if params.logprobs is not None:  # a text completion with the count alone
        body["logprobs"] = params.logprobs
    body["prompt"] = prompt.text
    return "/completions", body
