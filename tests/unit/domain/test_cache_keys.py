"""Cache keys: invariant under ordering and defaults, sensitive to every field."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import fields, replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmserver.domain.cache_keys import (
    CACHE_KEY_VERSION,
    CachePolicy,
    cache_key,
    canonical_json,
    is_cacheable,
)
from llmserver.domain.gateway import GatewayPolicy, generation_params
from llmserver.domain.inference import ChatMessage, GenerationParams, Prompt
from llmserver.domain.logs import CacheStatus
from llmserver.domain.output_constraint import OutputConstraint
from llmserver.domain.tools import ToolCall, ToolChoiceMode, ToolFunction, Tools

from .world import SPEC, World, ask, origin, wait_until

texts = st.text(max_size=20)
owners = st.none() | texts
calls = st.lists(st.builds(ToolCall, id=texts, name=texts, arguments=texts), max_size=2).map(tuple)
messages = st.lists(
    st.builds(
        ChatMessage,
        role=st.sampled_from(["system", "user", "assistant", "tool"]),
        content=texts,
        tool_calls=st.just(()) | calls,
        tool_call_id=st.none() | texts,
    ),
    min_size=1,
    max_size=4,
).map(tuple)
tools = st.builds(
    Tools,
    functions=st.lists(
        st.builds(
            ToolFunction,
            name=texts,
            description=st.none() | texts,
            parameters=st.none() | texts,
            strict=st.none() | st.booleans(),
        ),
        min_size=1,
        max_size=3,
    ).map(tuple),
    choice=st.sampled_from(ToolChoiceMode),
    function=st.none() | texts,
    parallel_calls=st.none() | st.booleans(),
)
prompts = st.one_of(
    st.builds(Prompt, messages=messages, tools=st.none() | tools),
    st.builds(Prompt, text=texts),
)
constraints = (
    st.none()
    | st.just(OutputConstraint.json_object())
    | st.builds(
        OutputConstraint.json_schema,
        st.dictionaries(texts, st.integers() | texts, max_size=3),
        name=st.none() | texts,
        strict=st.booleans(),
    )
)
params = st.builds(
    GenerationParams,
    max_tokens=st.integers(1, 4096),
    temperature=st.floats(0, 2, allow_nan=False),
    top_p=st.floats(0, 1, allow_nan=False),
    stop=st.lists(st.text(min_size=1, max_size=5), max_size=4).map(tuple),
    seed=st.none() | st.integers(0, 2**32),
    top_k=st.none() | st.integers(1, 2**31 - 1),
    constraint=constraints,
    logprobs=st.none() | st.integers(0, 20),
    n=st.integers(1, 8),
)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "owner": draw(owners),
        "model_id": draw(st.text(min_size=1, max_size=20)),
        "revision": draw(texts),
        "prompt": draw(prompts),
        "params": draw(params),
    }


@given(request=requests())
def test_the_hand_written_canonical_form_is_what_json_dumps_writes(request: dict[str, Any]) -> None:
    prompt: Prompt = request["prompt"]
    p: GenerationParams = request["params"]
    reference = [
        CACHE_KEY_VERSION,
        request["owner"],
        request["model_id"],
        request["revision"],
        p.max_tokens,
        p.temperature + 0.0,
        p.top_p + 0.0,
        list(p.stop),
        p.seed,
        [message_form(m) for m in prompt.messages] if prompt.messages else prompt.text,
    ]
    tools = prompt.tools
    c = p.constraint
    tail = [
        p.top_k,
        None
        if tools is None
        else [
            [[f.name, f.description, f.parameters, f.strict] for f in tools.functions],
            tools.choice.value,
            tools.function,
            tools.parallel_calls,
        ],
        None if c is None else [c.kind.value, c.name, c.strict, c.schema],
        p.n if p.n != 1 or p.logprobs is not None else None,
        p.logprobs,
    ]
    # Each only when something from there on is set, so every other key stays as it was.
    while tail and tail[-1] is None:
        tail.pop()
    reference.extend(tail)
    written = canonical_json(**request)
    assert written == json.dumps(reference, separators=(",", ":"), ensure_ascii=False)
    assert json.loads(written) == reference


def message_form(m: ChatMessage) -> list[Any]:
    """A plain message is its role and content; one with tool fields adds them."""
    if not m.tool_calls and m.tool_call_id is None:
        return [m.role, m.content]
    return [m.role, m.content, m.tool_call_id, [[c.id, c.name, c.arguments] for c in m.tool_calls]]


def test_negative_zero_gives_the_key_of_zero() -> None:
    common: dict[str, Any] = {
        "owner": None,
        "model_id": "m",
        "revision": "r",
        "prompt": Prompt(text="x"),
    }
    assert cache_key(**common, params=GenerationParams(temperature=-0.0)) == cache_key(
        **common, params=GenerationParams(temperature=0.0)
    )


@given(request=requests(), seed=st.integers())
def test_the_order_fields_are_given_in_does_not_matter(request: dict[str, Any], seed: int) -> None:
    fields = list(vars_of(request["params"]).items())
    random.Random(seed).shuffle(fields)
    shuffled = {**request, "params": GenerationParams(**dict(fields))}
    keyword_order = list(shuffled.items())
    random.Random(seed).shuffle(keyword_order)
    assert cache_key(**dict(keyword_order)) == cache_key(**request)


def vars_of(p: GenerationParams) -> dict[str, Any]:
    return {f.name: getattr(p, f.name) for f in fields(p)}


@given(
    explicit=st.fixed_dictionaries(
        {},
        optional={
            "max_tokens": st.just(SPEC.defaults.max_tokens),
            "temperature": st.sampled_from([0, 0.0, -0.0]),
            "top_p": st.sampled_from([1, 1.0]),
        },
    )
)
def test_an_absent_parameter_equals_its_default(explicit: dict[str, Any]) -> None:
    absent = generation_params(SPEC, ask())
    given_explicitly = generation_params(SPEC, ask(**explicit))
    key: dict[str, Any] = {
        "owner": "k1",
        "model_id": SPEC.id,
        "revision": SPEC.revision,
        "prompt": ask().prompt,
    }
    assert cache_key(**key, params=absent) == cache_key(**key, params=given_explicitly)


PARAM_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "max_tokens": st.integers(1, 4096),
    "temperature": st.floats(0, 2, allow_nan=False),
    "top_p": st.floats(0, 1, allow_nan=False),
    "stop": st.lists(st.text(min_size=1, max_size=5), max_size=4).map(tuple),
    "seed": st.none() | st.integers(0, 2**32),
    "top_k": st.none() | st.integers(1, 2**31 - 1),
    "constraint": constraints,
    "logprobs": st.none() | st.integers(0, 20),
    "n": st.integers(1, 8),
}


def mutate(request: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """``request`` with exactly one field changed: a top-level one, a parameter, the
    tools, or one message's role, content, calls or call id (or the raw prompt text)."""
    prompt: Prompt = request["prompt"]
    parts = ["owner", "model_id", "revision", "prompt", *PARAM_VALUES]
    part = data.draw(st.sampled_from(parts))
    if part in PARAM_VALUES:
        old = getattr(request["params"], part)
        new = data.draw(PARAM_VALUES[part].filter(lambda v: v != old))
        return {**request, "params": replace(request["params"], **{part: new})}
    if part == "owner":
        return {**request, part: data.draw(owners.filter(lambda v: v != request[part]))}
    if part != "prompt":
        return {**request, part: data.draw(texts.filter(lambda v: v != request[part]))}
    if prompt.messages is None:
        return {
            **request,
            "prompt": Prompt(text=data.draw(texts.filter(lambda v: v != prompt.text))),
        }
    field = data.draw(st.sampled_from(["role", "content", "tool_calls", "tool_call_id", "tools"]))
    if field == "tools":
        other = data.draw((st.none() | tools).filter(lambda v: v != prompt.tools))
        return {**request, "prompt": replace(prompt, tools=other)}
    chosen = list(prompt.messages)
    index = data.draw(st.integers(0, len(chosen) - 1))
    values: st.SearchStrategy[Any] = {"tool_calls": calls, "tool_call_id": st.none() | texts}.get(
        field, texts
    )
    old = getattr(chosen[index], field)
    changed: Any = data.draw(values.filter(lambda v: v != old))
    chosen[index] = replace(chosen[index], **{field: changed})
    return {**request, "prompt": replace(prompt, messages=tuple(chosen))}


@given(data=st.data(), request=requests())
def test_any_change_to_any_field_changes_the_key(
    data: st.DataObject, request: dict[str, Any]
) -> None:
    assert cache_key(**mutate(request, data)) != cache_key(**request)


def test_adding_a_message_changes_the_key() -> None:
    common: dict[str, Any] = {
        "owner": None,
        "model_id": "m",
        "revision": "r",
        "params": GenerationParams(),
    }
    one = Prompt(messages=(ChatMessage("user", "hi"),))
    two = Prompt(messages=(ChatMessage("system", ""), ChatMessage("user", "hi")))
    assert cache_key(**common, prompt=one) != cache_key(**common, prompt=two)


def test_a_chat_and_a_text_prompt_with_the_same_words_differ() -> None:
    common: dict[str, Any] = {
        "owner": None,
        "model_id": "m",
        "revision": "r",
        "params": GenerationParams(),
    }
    chat = cache_key(**common, prompt=Prompt(messages=(ChatMessage("user", "hi"),)))
    assert chat != cache_key(**common, prompt=Prompt(text="hi"))


def test_message_boundaries_are_part_of_the_key() -> None:
    common: dict[str, Any] = {
        "owner": None,
        "model_id": "m",
        "revision": "r",
        "params": GenerationParams(),
    }
    one = Prompt(messages=(ChatMessage("user", "ab"),))
    two = Prompt(messages=(ChatMessage("user", "a"), ChatMessage("user", "b")))
    assert cache_key(**common, prompt=one) != cache_key(**common, prompt=two)


def test_a_key_is_a_sha256_hex_digest() -> None:
    key = cache_key(
        owner=None, model_id="m", revision="r", prompt=Prompt(text="x"), params=GenerationParams()
    )
    assert len(key) == 64
    assert int(key, 16) >= 0


# -- which requests are cached -----------------------------------------------------------


@pytest.mark.parametrize(
    ("temperature", "seed", "policy", "opted_out", "cacheable"),
    [
        (0.0, None, CachePolicy(), False, True),
        (0.0, 3, CachePolicy(), False, True),
        (0.7, None, CachePolicy(), False, False),
        (0.7, 3, CachePolicy(), False, True),
        (0.7, 3, CachePolicy(cache_sampled_with_seed=False), False, False),
        (0.0, None, CachePolicy(cache_sampled_with_seed=False), False, True),
        (0.0, None, CachePolicy(), True, False),
        (0.0, None, CachePolicy(enabled=False), False, False),
    ],
)
def test_only_reproducible_requests_are_cacheable(
    temperature: float, seed: int | None, policy: CachePolicy, opted_out: bool, cacheable: bool
) -> None:
    params = GenerationParams(temperature=temperature, seed=seed)
    assert is_cacheable(params, policy, opted_out=opted_out) is cacheable


# -- whose answers they are -------------------------------------------------------------


def test_each_key_has_its_own_entry_and_a_shared_one_is_nobody_s() -> None:
    common: dict[str, Any] = {
        "model_id": "m",
        "revision": "r",
        "prompt": Prompt(text="x"),
        "params": GenerationParams(),
    }
    keys = {cache_key(owner=owner, **common) for owner in ("key-1", "key-2", "", None)}
    assert len(keys) == 4


async def test_by_default_a_key_never_gets_another_key_s_answer() -> None:
    world = World()
    alice, bob = await world.principal(), await world.principal()
    statuses = [
        (await world.gateway.complete(principal, ask(), origin(f"r{n}"))).cache_status
        for n, principal in enumerate((alice, bob, bob))
    ]
    assert statuses == [CacheStatus.MISS, CacheStatus.MISS, CacheStatus.HIT]
    assert world.backend.generate_calls == 2


async def test_shared_answers_are_a_hit_for_every_key() -> None:
    world = World(policy=GatewayPolicy(cache=CachePolicy(shared_across_keys=True)))
    alice, bob = await world.principal(), await world.principal()
    first = await world.gateway.complete(alice, ask(), origin("r1"))
    second = await world.gateway.complete(bob, ask(), origin("r2"))
    assert (first.cache_status, second.cache_status) == (CacheStatus.MISS, CacheStatus.HIT)
    assert world.backend.generate_calls == 1


async def test_by_default_only_one_key_s_identical_concurrent_requests_share_an_inference() -> None:
    world = World()
    world.backend.gate = asyncio.Event()
    alice, bob = await world.principal(), await world.principal()
    tasks = [
        asyncio.create_task(world.gateway.complete(principal, ask(), origin(f"r{n}")))
        for n, principal in enumerate((alice, alice, bob))
    ]
    await wait_until(lambda: world.backend.generate_calls == 2)
    world.backend.gate.set()
    outcomes = await asyncio.gather(*tasks)
    assert world.backend.generate_calls == 2
    assert sorted(o.cache_status for o in outcomes[:2]) == [CacheStatus.HIT, CacheStatus.MISS]
    assert outcomes[2].cache_status is CacheStatus.MISS
