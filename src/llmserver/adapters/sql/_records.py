"""Domain records to table rows and back, by field name.

A field added to a record, with a column of the same name, needs no edit here: msgspec
converts a column's value to the field's annotated type (a string to its enum, a JSON list
to a tuple) and ``columns`` gives back the forms the tables hold (an enum's value, a list).
Datetimes pass through unchanged both ways.
"""

from __future__ import annotations

from dataclasses import fields
from enum import Enum
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from llmserver.domain.ports import CachedCompletion

if TYPE_CHECKING:
    from _typeshed import DataclassInstance
    from sqlalchemy import Row

Record = TypeVar("Record")

_RESPONSE = ("text", "finish_reason")
"""The ``CachedCompletion`` fields held in the cache table's one ``response`` JSON column:
the answer as it is replayed."""


def record(row: object, kind: type[Record]) -> Record:
    """A domain record from an ORM object or a Core ``Row``, read by attribute name."""
    return msgspec.convert(row, kind, from_attributes=True)


def columns(item: DataclassInstance) -> dict[str, Any]:
    """A domain record's column values, by field name."""
    return {name: _column_value(getattr(item, name)) for name in _field_names(type(item))}


def cached_completion(row: Row[Any]) -> CachedCompletion:
    values = row._asdict()
    values.update(values.pop("response"))
    return msgspec.convert(values, CachedCompletion)


def cache_columns(entry: CachedCompletion) -> dict[str, Any]:
    values = columns(entry)
    values["response"] = {name: values.pop(name) for name in _RESPONSE}
    return values


@cache
def _field_names(kind: type[DataclassInstance]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(kind))


def _column_value(value: object) -> object:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value
