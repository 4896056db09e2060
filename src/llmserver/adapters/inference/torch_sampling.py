"""Drawing a row's next token from its logits, as its request's sampling parameters say."""

from __future__ import annotations

import secrets

import torch

from llmserver.adapters.inference.grammar import RowGrammar
from llmserver.adapters.inference.token_logprobs import TokenTexts, token_logprob
from llmserver.domain.inference import GenerationParams, TokenLogprob


def row_generator(params: GenerationParams, device: torch.device) -> torch.Generator | None:
    """The random source of one sampled request (its seed's, or a fresh one); ``None`` for a
    greedy one, which takes the likeliest token."""
    if params.greedy:
        return None
    generator = torch.Generator(device=device)
    generator.manual_seed(params.seed if params.seed is not None else secrets.randbits(63))
    return generator


def sample_token(logits: torch.Tensor, params: GenerationParams, generator: torch.Generator) -> int:
    """One token drawn from one row's logits at its temperature, top_k and top_p (top_k
    first, as transformers and vLLM apply them)."""
    top_k = params.top_k
    if top_k is not None and top_k < logits.shape[-1]:
        logits = logits.masked_fill(logits < logits.topk(top_k).values[-1], -torch.inf)
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        outside = sorted_probs.cumsum(0) - sorted_probs > params.top_p
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))


def pick_token(
    logits: torch.Tensor,
    greedy: int,
    params: GenerationParams,
    generator: torch.Generator | None,
    grammar: RowGrammar | None,
) -> int:
    """One row's next token: ``greedy`` (the batch's argmax for this row) or a sample, from
    the logits its grammar allows when it has one."""
    if grammar is not None:
        allowed = torch.from_numpy(grammar.allowed(logits.shape[-1]))
        logits = logits.masked_fill(~allowed, -torch.inf)
        greedy = int(logits.argmax())
    return greedy if generator is None else sample_token(logits, params, generator)


def logprob_of(logits: torch.Tensor, token: int, top: int, texts: TokenTexts) -> TokenLogprob:
    """``token``'s entry from its row's logits (the model's raw distribution, see
    ``token_logprobs``), with the ``top`` likeliest tokens of the step. ``logits`` are the
    raw ones, never a grammar's masked copy (``pick_token`` masks a copy), so a
    constrained row reports no forbidden token's -inf."""
    logprobs = torch.log_softmax(logits, dim=-1)
    best: list[tuple[int, float]] = []
    if top:
        values, ids = logprobs.topk(min(top, logprobs.shape[-1]))
        best = list(zip(ids.tolist(), values.tolist(), strict=True))
    return token_logprob(token, float(logprobs[token]), best, texts)
