"""The prompt and schema the constrained-decoding tests of both local backends use: a pet
with a bounded string, a bounded integer, an enum, an array and a nested object."""

from __future__ import annotations

from typing import Any

from llmserver.domain.inference import ChatMessage, Prompt

PROMPT = Prompt(messages=(ChatMessage("user", "Describe a pet as JSON."),))
PET: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 30},
        "kind": {"enum": ["cat", "dog", "fish"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3},
        "owner": {
            "type": "object",
            "properties": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
            "required": ["zip"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "age", "kind", "tags", "owner"],
    "additionalProperties": False,
}
