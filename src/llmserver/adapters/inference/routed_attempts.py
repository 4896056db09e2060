"""What a routed request's attempts add up to, and a fallback's stream relabelled as the
request's: helpers of ``routed_backend``."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, replace

from llmserver.domain.errors import GatewayError
from llmserver.domain.inference import StreamEnd, StreamEvent, close_stream
from llmserver.domain.pricing import Prices


@dataclass(slots=True)
class Tally:
    """One client request's attempts on a routed model and its fallbacks."""

    attempts: int = 0
    error: BaseException | None = None
    tried: str | None = None
    """The deployment of the last attempt (``model/deployment`` for a fallback's)."""

    def failed(self, error: BaseException) -> BaseException:
        """``error``, told (when it is the gateway's) where this request failed last and
        after how many attempts, for its log row."""
        if isinstance(error, GatewayError) and self.tried is not None:
            error.deployment, error.attempts = self.tried, self.attempts
        return error


def via(model_id: str, served_by: str | None) -> str:
    return model_id if served_by is None else f"{model_id}/{served_by}"


async def relabel(
    events: AsyncIterator[StreamEvent],
    first: StreamEvent,
    model_id: str,
    prices: Prices,
    tally: Tally,
) -> AsyncGenerator[StreamEvent, None]:
    """A fallback model's stream, its end (or failure) saying it answered."""
    event = first
    try:
        while True:
            if isinstance(event, StreamEnd):
                yield replace(
                    event,
                    served_by=via(model_id, event.served_by),
                    attempts=tally.attempts + event.attempts - 1,
                    prices=event.prices or prices,
                )
                return
            yield event
            event = await anext(events)
    except GatewayError as exc:
        tally.tried = via(model_id, exc.deployment)
        tally.attempts += (exc.attempts or 1) - 1
        tally.failed(exc)
        raise
    finally:
        await close_stream(events)
