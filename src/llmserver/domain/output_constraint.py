"""A constraint on the shape of a completion's text: any JSON object, or JSON that a given
JSON schema accepts.

One value for every reason to constrain: OpenAI's ``response_format`` builds one, and so
can a tool call whose arguments must match the function's parameter schema. A local
backend enforces it while it decodes (a grammar masks the tokens that would break it); an
``http`` backend forwards it and, when ``strict``, checks the answer against the schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

MAX_SCHEMA_CHARS = 100_000
"""The longest schema (as compact JSON text) accepted: a grammar compiled from a larger one
costs every request on the model a wait for the compiler, and no real answer format needs
more (OpenAI caps a schema's strings at 120,000 characters altogether)."""


class ConstraintKind(StrEnum):
    JSON_OBJECT = "json_object"
    """Any JSON object."""
    JSON_SCHEMA = "json_schema"
    """A JSON value the schema accepts."""


@dataclass(frozen=True, slots=True)
class OutputConstraint:
    """Frozen and hashable: backends key their compiled grammars by it."""

    kind: ConstraintKind
    schema: str | None = None
    """The schema as compact JSON text, its keys in the order sent (an object's properties
    are generated in that order, so two orders are two constraints); ``None`` for
    ``JSON_OBJECT``."""
    name: str | None = None
    strict: bool = False
    """Whether the answer must be checked against the schema (OpenAI's ``strict``)."""
    source: str = "response_format"
    """The request parameter it comes from, which an error about it names (``tools`` for a
    call a local model is made to write)."""

    def __post_init__(self) -> None:
        if (self.kind is ConstraintKind.JSON_SCHEMA) != (self.schema is not None):
            raise ValueError("a JSON_SCHEMA constraint holds a schema, a JSON_OBJECT one none")

    @classmethod
    def json_object(cls) -> OutputConstraint:
        return cls(ConstraintKind.JSON_OBJECT)

    @classmethod
    def json_schema(
        cls,
        schema: dict[str, Any],
        *,
        name: str | None = None,
        strict: bool = False,
        source: str = "response_format",
    ) -> OutputConstraint:
        """``schema`` as compact JSON text. Raises ``ValueError`` when it is longer than
        ``MAX_SCHEMA_CHARS``, nested past the JSON encoder's depth or holds a number JSON
        cannot write (a decoder turns 1e999 into infinity)."""
        try:
            text = json.dumps(schema, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except RecursionError:
            raise ValueError("the schema is nested too deeply") from None
        if len(text) > MAX_SCHEMA_CHARS:
            raise ValueError(
                f"the schema is {len(text)} characters as compact JSON; at most "
                f"{MAX_SCHEMA_CHARS} are accepted"
            )
        return cls(ConstraintKind.JSON_SCHEMA, schema=text, name=name, strict=strict, source=source)

    @property
    def grammar_schema(self) -> str:
        """The JSON schema a grammar is built from: the schema, or any object's."""
        return self.schema if self.schema is not None else '{"type":"object"}'
