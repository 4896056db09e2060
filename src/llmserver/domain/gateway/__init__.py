"""The gateway use case: one completion through every policy, in order.

authenticate -> authorise model -> RPM -> hot cache -> count tokens / context check
-> quota reserve -> durable cache -> single-flight -> inference -> settle -> log -> cache store

The hot cache is asked before the prompt's tokens are counted: a hit carries the count the
same model and revision made of the same prompt when the answer was stored, so a hit never
runs the tokenizer (with its chat template, the larger part of a cached answer's cost on a
real model). It still reserves and passes every check a miss does.

Every admitted request holds a quota reservation that is closed exactly once: settled to
its real usage on success, released when it fails, settled to what was sent when a stream
is cut short. Every request writes exactly one log row.

Streaming runs the same checks and starts the stream before ``open_stream`` returns, so
refusals and errors before the first token become proper HTTP answers, and the stream's
``finally`` settles even if the caller never iterates or closes it.

Who owns what:

- ``values``: what goes in and comes out (``Principal``, ``CompletionRequest``,
  ``GatewayPolicy``, ``Ledgers``, ``Outcome``, ``StreamSession``, ``generation_params``,
  ``TOUCH_INTERVAL``) and the per-request records ``Call`` and ``Admission``.
- ``admission``: ``Admissions``, every check up to the quota and budget reservations.
- ``answering``: ``Answers``, durable cache, single-flight, inference, cache store.
- ``streaming``: ``Streams``, a streamed answer and the cached replay.
- ``outcomes``: ``Outcomes``, settle / release / fail and the log row; ``BackendErrors``.
- ``embedding``: ``EmbeddingUseCase``, the same steps for ``/v1/embeddings``.
- ``use_case``: ``Gateway``, authentication and the use case composing the four above,
  each called once per step (the hot path is measured in microseconds).
"""

from llmserver.domain.gateway.use_case import Gateway
from llmserver.domain.gateway.values import (
    TOUCH_INTERVAL,
    Accounts,
    CompletionRequest,
    EmbeddingOutcome,
    GatewayPolicy,
    Ledgers,
    Outcome,
    Principal,
    StreamSession,
    generation_params,
)

__all__ = [
    "TOUCH_INTERVAL",
    "Accounts",
    "CompletionRequest",
    "EmbeddingOutcome",
    "Gateway",
    "GatewayPolicy",
    "Ledgers",
    "Outcome",
    "Principal",
    "StreamSession",
    "generation_params",
]
