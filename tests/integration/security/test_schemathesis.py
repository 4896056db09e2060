"""Property-based fuzzing of every operation in the served OpenAPI schema, with an admin key
and with a user key: never a 5xx, and every documented answer matches its schema."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from livesupport import LiveServer

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]


@pytest.fixture(scope="module")
def fuzz_keys(live_server: LiveServer) -> dict[str, str]:
    """Keys of both roles with limits the fuzzing never reaches, so it is not just 429s."""
    keys = {"admin": live_server.admin_key}
    response = httpx.post(
        live_server.base_url + "/admin/keys",
        headers={"Authorization": f"Bearer {live_server.admin_key}"},
        json={"name": "fuzz-user", "role": "user", "rpm_limit": 1_000_000},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    keys["user"] = response.json()["key"]
    return keys


FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)


SURFACES = {"POST /v1/chat/completions", "POST /v1/messages", "POST /v1/responses"}
"""One completion operation of each API surface, which every full run must have fuzzed."""


def _fuzz(
    base_url: str,
    key: str,
    mode: GenerationMode,
    *,
    only: str | None = None,
    examples: int = MAX_EXAMPLES,
) -> tuple[int, list[str], set[str]]:
    """Every operation (or the one labelled ``only``), ``examples`` generated cases each;
    returns (cases, failures, the labels of the operations that got cases).

    Driven through schemathesis's Python API with Hypothesis directly rather than its
    pytest plugin, which does not run under this pytest version.
    """
    schema = schemathesis.openapi.from_url(base_url + "/openapi/openapi.json")
    calls = 0
    failures: list[str] = []
    fuzzed: set[str] = set()
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the served schema itself is invalid: fail with its reason
        operation = result.ok()
        if only is not None and operation.label != only:
            continue

        @settings(FUZZ_SETTINGS, max_examples=examples)
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            nonlocal calls
            calls += 1
            case.call_and_validate(
                base_url=base_url,
                headers={"Authorization": f"Bearer {key}"},
                checks=CHECKS,
                timeout=30,
            )

        before = calls
        try:
            run()
        except Unsatisfiable:
            continue  # nothing in this operation can be made invalid (negative mode)
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:600]}")
        finally:
            if calls > before:
                fuzzed.add(operation.label)
    return calls, failures, fuzzed


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("role", ["admin", "user"])
def test_fuzz_every_operation(
    role: str,
    mode: GenerationMode,
    fuzz_keys: dict[str, str],
    live_server: LiveServer,
) -> None:
    calls, failures, fuzzed = _fuzz(live_server.base_url, fuzz_keys[role], mode)
    print(f"\nschemathesis {role} {mode.value}: {calls} requests, {len(failures)} failures")
    assert calls > 0
    assert fuzzed >= SURFACES, SURFACES - fuzzed
    assert not failures, "\n".join(failures)


EMBEDDINGS = "POST /v1/embeddings"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzz_embeddings_harder(
    mode: GenerationMode, fuzz_keys: dict[str, str], live_server: LiveServer
) -> None:
    """The embeddings body is a union (a text, texts, token ids, lists of them) with a
    batch limit and a ``dimensions`` the model bounds: more cases than the sweep gives it.
    A test of its own also proves the served schema documents the route."""
    calls, failures, _ = _fuzz(
        live_server.base_url, fuzz_keys["user"], mode, only=EMBEDDINGS, examples=120
    )
    print(f"\nschemathesis {EMBEDDINGS} {mode.value}: {calls} requests, {len(failures)} failures")
    assert calls > 0, f"{EMBEDDINGS} is not in the served OpenAPI schema"
    assert not failures, "\n".join(failures)


CHAT = "POST /v1/chat/completions"


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzz_chat_tools_harder(
    mode: GenerationMode, fuzz_keys: dict[str, str], live_server: LiveServer
) -> None:
    """The chat body's tool fields (``tools`` with their JSON Schemas, ``tool_choice``'s
    union of names and objects, ``parallel_tool_calls``, history messages with
    ``tool_calls`` and ``tool_call_id``) and ``response_format`` (a tagged union holding a
    free-form JSON Schema, which a local model compiles to a grammar) give the chat body
    many more shapes than the sweep's cases reach."""
    calls, failures, _ = _fuzz(
        live_server.base_url, fuzz_keys["user"], mode, only=CHAT, examples=150
    )
    print(f"\nschemathesis {CHAT} {mode.value}: {calls} requests, {len(failures)} failures")
    assert calls > 0
    assert not failures, "\n".join(failures)


COMPLETIONS = ("POST /v1/chat/completions", "POST /v1/completions")


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("operation", COMPLETIONS)
def test_fuzz_logprobs_and_n_harder(
    operation: str, mode: GenerationMode, fuzz_keys: dict[str, str], live_server: LiveServer
) -> None:
    """``logprobs``, ``top_logprobs`` and ``n`` (bounded by the schema, ``n`` also by the
    server's maximum: a 400) multiply the answer's shapes: several choices, each with log
    probabilities, streamed or not; more cases than the sweep gives them, every answer
    checked against the served schema. The schema must document the fields."""
    schema = httpx.get(live_server.base_url + "/openapi/openapi.json", timeout=30).json()
    documented = str(schema["components"]["schemas"])
    for field in ("top_logprobs", "token_logprobs", "text_offset", "logprobs"):
        assert f"'{field}'" in documented, field
    calls, failures, _ = _fuzz(
        live_server.base_url, fuzz_keys["user"], mode, only=operation, examples=80
    )
    print(f"\nschemathesis {operation} {mode.value}: {calls} requests, {len(failures)} failures")
    assert calls > 0
    assert not failures, "\n".join(failures)
