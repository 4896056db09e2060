"""Domain errors. Each carries what the HTTP layer needs for a precise answer.

Each API surface maps ``kind`` to its status codes and error body (the OpenAI one in
``llmserver.app.statuses`` and ``llmserver.app.errors``); nothing here knows about HTTP.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from llmserver.domain.ratelimit import RateDecision


class ErrorKind(StrEnum):
    INVALID_REQUEST = "invalid_request"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    QUOTA_EXCEEDED = "quota_exceeded"
    OVERLOADED = "overloaded"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    UPSTREAM = "upstream"
    CANCELLED = "cancelled"
    INTERNAL = "internal"
    """Not raised: what a request that failed with a bug is logged as."""


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""

    kind: ErrorKind = ErrorKind.INVALID_REQUEST
    code: str = "invalid_request"
    rate: RateDecision | None = None
    """The key's rate-limit state when known, so refusals carry the rate headers too."""
    token_rate: RateDecision | None = None
    """The key's TPM state when known (``x-ratelimit-*-tokens``)."""
    deployment: str | None = None
    """Where a routed model's request failed last (``fallback-model/deployment`` on a
    fallback), for its log row; ``None``: no deployment was tried."""
    attempts: int | None = None
    """The calls the request made before failing; set with ``deployment``."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequest(GatewayError):
    kind = ErrorKind.INVALID_REQUEST
    code = "invalid_request"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message, param=param)
        if code is not None:
            self.code = code


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"

    def __init__(
        self, *, prompt_tokens: int, max_tokens: int, context_length: int, at_least: bool = False
    ) -> None:
        """``at_least``: ``prompt_tokens`` is a lower bound (the prompt was not tokenized)."""
        many = "at least " if at_least else ""
        super().__init__(
            f"This model's maximum context length is {context_length} tokens. "
            f"The request has {many}{prompt_tokens} prompt tokens and asks for up to "
            f"{max_tokens} completion tokens ({many}{prompt_tokens + max_tokens} in total). "
            "Shorten the prompt or lower max_tokens.",
            param="messages",
        )
        self.prompt_tokens = prompt_tokens
        self.context_length = context_length


class InputTooLong(ContextLengthExceeded):
    """An embedding input longer than the model takes (there is nothing to generate, so
    ``ContextLengthExceeded``'s message about completion tokens would mislead)."""

    def __init__(self, *, index: int, tokens: int, context_length: int) -> None:
        InvalidRequest.__init__(
            self,
            f"Input {index} has {tokens} tokens; this model takes at most {context_length} "
            "tokens per input. Shorten it or split it.",
            param="input",
        )
        self.prompt_tokens = tokens
        self.context_length = context_length


class WrongModelKind(InvalidRequest):
    """A model asked for on a surface it does not serve (chat on an embedding model)."""

    code = "unsupported_model"

    def __init__(self, model: str, *, kind: str, surface: str, instead: str) -> None:
        super().__init__(
            f"Model {model!r} is {kind} model and cannot serve {surface}; use {instead}.",
            param="model",
        )


class AuthReason(StrEnum):
    MISSING = "missing_api_key"
    MALFORMED = "malformed_api_key"
    INVALID = "invalid_api_key"
    REVOKED = "revoked_api_key"
    EXPIRED = "expired_api_key"
    NO_SCHEME = "invalid_authorization_header"


_AUTH_MESSAGES = {
    AuthReason.MISSING: "No API key provided. Send it as 'Authorization: Bearer <key>' "
    "or in the 'X-API-Key' header.",
    AuthReason.MALFORMED: "The API key is malformed: expected 'llms_<prefix>_<secret>'.",
    AuthReason.INVALID: "Incorrect API key provided.",
    AuthReason.REVOKED: "This API key has been revoked.",
    AuthReason.EXPIRED: "This API key has expired.",
    AuthReason.NO_SCHEME: "The Authorization header has no scheme: send the key as "
    "'Authorization: Bearer <key>' or in the 'X-API-Key' header.",
}


class Unauthenticated(GatewayError):
    kind = ErrorKind.UNAUTHENTICATED

    def __init__(self, reason: AuthReason) -> None:
        super().__init__(_AUTH_MESSAGES[reason])
        self.reason = reason
        self.code = reason.value


class Forbidden(GatewayError):
    kind = ErrorKind.FORBIDDEN
    code = "permission_denied"


class ModelNotAllowed(Forbidden):
    code = "model_not_allowed"

    def __init__(self, model: str) -> None:
        super().__init__(f"This API key may not use the model '{model}'.", param="model")


class ModelNotFound(GatewayError):
    kind = ErrorKind.NOT_FOUND
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model '{model}' does not exist.", param="model")
        self.model = model


class NotFound(GatewayError):
    kind = ErrorKind.NOT_FOUND
    code = "not_found"


class RateLimited(GatewayError):
    kind = ErrorKind.RATE_LIMITED
    code = "rate_limit_exceeded"

    def __init__(self, *, limit: int, retry_after: float, message: str | None = None) -> None:
        super().__init__(
            message
            or f"Rate limit reached: {limit} requests per minute. Try again in {retry_after:.3f}s."
        )
        self.limit = limit
        self.retry_after = retry_after


class TokenRateLimited(RateLimited):
    """The key's tokens-per-minute window has no room for this request's reservation."""

    def __init__(
        self,
        *,
        needed: int,
        decision: RateDecision,
        model: str | None = None,
        team: str | None = None,
    ) -> None:
        on = "" if model is None else f" on model {model}"
        if team is not None:
            on = f" for team '{team}'"
        super().__init__(
            limit=decision.limit,
            retry_after=decision.retry_after,
            message=f"Rate limit reached: {decision.limit} tokens per minute{on}. This request may "
            f"use up to {needed} tokens (prompt + max_tokens) and {decision.remaining} are "
            f"free in the last minute. Try again in {decision.retry_after:.3f}s.",
        )
        self.token_rate = decision


class ParallelLimited(RateLimited):
    """The key already has its ``max_parallel`` requests in flight."""

    code = "too_many_parallel_requests"
    RETRY_AFTER_S = 1.0
    """No finishing time is known; a second is a polite first retry."""

    def __init__(self, *, limit: int, team: str | None = None) -> None:
        who = "this API key" if team is None else f"the API key's team '{team}'"
        super().__init__(
            limit=limit,
            retry_after=self.RETRY_AFTER_S,
            message=f"Too many requests in flight: {who} may have {limit} at once. "
            "Retry when one of them has finished.",
        )


class TooLargeForTokenRate(InvalidRequest):
    """A reservation larger than the key's whole TPM limit, which no wait would admit (a 400,
    not a 429 a client would retry forever)."""

    code = "tokens_exceed_rate_limit"

    def __init__(
        self, *, needed: int, limit: int, model: str | None = None, team: str | None = None
    ) -> None:
        on = "" if model is None else f" on model {model}"
        whose = "this API key's" if team is None else f"the API key's team '{team}''s"
        super().__init__(
            f"This request may use up to {needed} tokens (prompt + max_tokens), more than "
            f"{whose} limit of {limit} tokens per minute{on}, so it can never be admitted. "
            "Lower max_tokens or shorten the prompt.",
            param="max_tokens",
        )


class QuotaExceeded(GatewayError):
    kind = ErrorKind.QUOTA_EXCEEDED
    code = "insufficient_quota"

    def __init__(
        self,
        *,
        needed: int,
        remaining: int,
        quota: int,
        reset_at: datetime,
        model: str | None = None,
        team: str | None = None,
    ) -> None:
        """``model``: the model whose quota of the key's refused; ``team``: the key's team
        whose quota refused; neither: the key's own."""
        on = "" if model is None else f" on model {model}"
        if team is not None:
            on = f" of the API key's team '{team}'"
        super().__init__(
            f"Monthly token quota{on} exceeded: this request may use up to {needed} tokens "
            f"but {remaining} of {quota} are left. The quota resets at {reset_at.isoformat()}."
        )
        self.model = model
        self.needed = needed
        self.remaining = remaining
        self.quota = quota
        self.reset_at = reset_at


class BudgetExceeded(GatewayError):
    """The key's spend budget for its window cannot cover this request's worst case."""

    kind = ErrorKind.QUOTA_EXCEEDED
    code = "budget_exceeded"

    def __init__(
        self,
        *,
        needed_usd: str,
        remaining_usd: str,
        budget_usd: str,
        window: str,
        reset_at: datetime,
        team: str | None = None,
    ) -> None:
        whose = "the key's" if team is None else f"the key's team '{team}''s"
        super().__init__(
            f"Budget exceeded: this request may cost up to ${needed_usd} but ${remaining_usd} "
            f"of {whose} ${budget_usd} {window} budget is left. The budget resets at "
            f"{reset_at.isoformat()}."
        )
        self.remaining_usd = remaining_usd
        self.reset_at = reset_at


class Overloaded(GatewayError):
    """The model's queue is full; the client should retry later."""

    kind = ErrorKind.OVERLOADED
    code = "model_overloaded"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RequestLogBacklog(Overloaded):
    """The request log is backed up (its database is slow or down): new work is refused
    until it catches up, rather than served without its log row. Its own code, so that a
    client or an alert tells it from a busy model."""

    code = "request_log_backlog"


class Unavailable(GatewayError):
    """A dependency the request needs (a model, a store) is not ready."""

    kind = ErrorKind.UNAVAILABLE
    code = "service_unavailable"

    def __init__(self, message: str, *, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class GenerationTimeout(GatewayError):
    kind = ErrorKind.TIMEOUT
    code = "timeout"


class UpstreamError(GatewayError):
    """A remote backend failed or answered something unusable."""

    kind = ErrorKind.UPSTREAM
    code = "upstream_error"

    def __init__(self, message: str, *, upstream_status: int | None = None) -> None:
        super().__init__(message)
        self.upstream_status = upstream_status


class Cancelled(GatewayError):
    """The client went away before the answer was complete."""

    kind = ErrorKind.CANCELLED
    code = "client_closed_request"
