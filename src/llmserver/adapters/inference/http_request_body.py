"""What an ``http`` model's upstream is sent: an OpenAI chat or text completion request."""

from __future__ import annotations

from typing import Any

from llmserver.adapters.inference.answer_schema import response_format
from llmserver.adapters.inference.http_tools import add_tools, upstream_message
from llmserver.domain.inference import GenerationParams, Prompt


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
