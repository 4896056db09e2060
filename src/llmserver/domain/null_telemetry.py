"""Telemetry that records nothing: the gateway's default where no metrics are wired (unit
tests, tools)."""

from __future__ import annotations


class NullTelemetry:
    """Telemetry that records nothing (unit tests, tools)."""

    def cache_lookup(self, layer: str, hit: bool) -> None:
        pass

    def refused(self, cause: str) -> None:
        pass

    def tokens(self, model: str, prompt: int, completion: int) -> None:
        pass

    def spend(self, model: str, picodollars: int) -> None:
        pass

    def team_usage(self, team: str, prompt: int, completion: int, picodollars: int) -> None:
        pass

    def first_token(self, model: str, seconds: float) -> None:
        pass

    def generation(self, model: str, seconds: float, completion_tokens: int) -> None:
        pass

    def backend_error(self, model: str, kind: str) -> None:
        pass
