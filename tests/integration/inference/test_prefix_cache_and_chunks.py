"""The torch backend's prefix cache and chunked prefill on the tiny demo model: the same
tokens as the plain path, sharing across a batch, eviction, and decode steps that go on
while a long prompt prefills."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from llmserver.domain.inference import (
    ChatMessage,
    Completion,
    GenerationParams,
    PrefixCacheStats,
    Prompt,
    TextDelta,
)
from llmserver.domain.registry import ModelSpec

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from llmserver.adapters.inference import mixed_step  # noqa: E402
from llmserver.adapters.inference.kv_cache import RoomyLayer  # noqa: E402
from llmserver.adapters.inference.torch_backend import TorchBackend  # noqa: E402

pytestmark = pytest.mark.torch

PHRASE = "You are a careful assistant who answers in plain words. "
SYSTEM = PHRASE * 12
LONG_SYSTEM = PHRASE * 18
GREEDY = GenerationParams(max_tokens=24, temperature=0)
LONG_GREEDY = GenerationParams(max_tokens=400, temperature=0)
QUESTIONS = ["Hello there", "What is a clock?", "Name three colours", "Why is the sky blue?"]

MakeBackend = Callable[..., TorchBackend]


def chat(question: str, system: str = SYSTEM) -> Prompt:
    return Prompt(messages=(ChatMessage("system", system), ChatMessage("user", question)))


@pytest.fixture
async def make_backend(demo_spec: ModelSpec) -> AsyncIterator[MakeBackend]:
    made: list[TorchBackend] = []

    def make(**options: Any) -> TorchBackend:
        backend = TorchBackend(demo_spec, max_batch_size=8, request_timeout_s=60.0, **options)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.close()


def stats(backend: TorchBackend) -> PrefixCacheStats:
    found = backend.status().prefix_cache
    assert found is not None
    return found


async def answers(backend: TorchBackend, prompts: list[Prompt]) -> list[Completion]:
    return [await backend.generate(p, GREEDY) for p in prompts]


async def test_a_cached_prefix_gives_the_tokens_of_the_plain_path(
    make_backend: MakeBackend,
) -> None:
    cached, plain = make_backend(prefix_cache_mb=16), make_backend(prefix_cache_mb=0)
    assert plain.status().prefix_cache is None
    prompts = [chat(q) for q in QUESTIONS]
    system_tokens = await cached.count_tokens(chat(""))
    got = await answers(cached, prompts)
    assert got == await answers(plain, prompts)
    # Every request after the first reuses at least the system prompt's full blocks.
    assert stats(cached).hit_tokens >= (len(prompts) - 1) * (system_tokens // 16 * 16)
    assert stats(cached).evictions == 0


async def test_concurrent_rows_share_a_cached_prefix(make_backend: MakeBackend) -> None:
    cached, plain = make_backend(prefix_cache_mb=16), make_backend(prefix_cache_mb=0)
    prompts = [chat(q) for q in QUESTIONS]
    await cached.generate(chat("warm the cache up"), GREEDY)
    before = stats(cached).hit_tokens
    together = await asyncio.gather(*(cached.generate(p, GREEDY) for p in prompts))
    assert list(together) == await answers(plain, prompts)
    assert stats(cached).hit_tokens - before >= len(prompts) * 16
    assert cached.max_rows_per_step > 1


async def test_a_tiny_budget_evicts_and_changes_no_answer(make_backend: MakeBackend) -> None:
    # One MiB holds 64 blocks of this model (16 KiB each): three ~440-token prompts
    # do not fit together, so each one evicts what came before.
    cached, plain = make_backend(prefix_cache_mb=1), make_backend(prefix_cache_mb=0)
    prompts = [chat("Go on", system=f"{n} " + LONG_SYSTEM) for n in range(3)]
    assert await answers(cached, prompts * 2) == await answers(plain, prompts * 2)
    after = stats(cached)
    assert after.evictions > 0
    assert 0 < after.bytes <= after.budget_bytes == 2**20


async def test_eviction_does_not_touch_a_running_row(make_backend: MakeBackend) -> None:
    cached, plain = make_backend(prefix_cache_mb=1), make_backend(prefix_cache_mb=0)
    long_answer = GenerationParams(max_tokens=60, temperature=0)
    target = chat("Tell me more", system=LONG_SYSTEM)
    await cached.generate(target, GREEDY)  # its system prompt is cached now
    hits = stats(cached).hit_tokens
    stream = cached.stream(target, long_answer)
    parts = [await anext(stream)]  # running, built from cached blocks
    assert stats(cached).hit_tokens > hits
    evictions = stats(cached).evictions
    for n in range(3):  # other prompts push every block of the target's prefix out
        await cached.generate(chat("Go on", system=f"{n} " + LONG_SYSTEM), GREEDY)
    assert stats(cached).evictions > evictions
    parts += [event async for event in stream]
    text = "".join(p.text for p in parts if isinstance(p, TextDelta))
    assert text == (await plain.generate(target, long_answer)).text


class ForwardPasses:
    """The (rows, tokens) of every forward pass of a model while it is installed."""

    def __init__(self, model: Any) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self._hook = model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, _module: object, _args: object, kwargs: dict[str, Any]) -> None:
        self.shapes.append(tuple(kwargs["input_ids"].shape))

    def remove(self) -> None:
        self._hook.remove()

    def chunks(self) -> list[int]:
        """Where the one-row passes of several tokens (prefill) are."""
        return [i for i, (rows, tokens) in enumerate(self.shapes) if rows == 1 and tokens > 1]


async def while_a_row_decodes(backend: TorchBackend, prompt: Prompt) -> tuple[str, ForwardPasses]:
    """``prompt``'s greedy answer, computed while another row is decoding."""
    running = backend.stream(Prompt(text="Once upon a time"), LONG_GREEDY)
    await anext(running)
    passes = ForwardPasses(backend.model)
    try:
        completion = await backend.generate(prompt, GREEDY)
    finally:
        passes.remove()
        await running.aclose()  # type: ignore[attr-defined]
    return completion.text, passes


async def test_chunked_prefill_gives_the_tokens_of_one_pass(make_backend: MakeBackend) -> None:
    chunked = make_backend(prefix_cache_mb=0, prefill_chunk_tokens=32)
    prompt = chat("Go on", system=LONG_SYSTEM)
    ids = await chunked._encode.encode(prompt)
    assert len(ids) > 10 * 32
    out = chunked.model.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False)
    expected = chunked.tokenizer.decode(out[0, len(ids) :].tolist(), skip_special_tokens=True)
    text, passes = await while_a_row_decodes(chunked, prompt)
    assert len(passes.chunks()) > 10
    assert text == expected
    # With no other row decoding nobody waits on it: the prompt runs in one pass.
    passes = ForwardPasses(chunked.model)
    try:
        assert (await chunked.generate(prompt, GREEDY)).text == expected
    finally:
        passes.remove()
    assert passes.shapes[0] == (1, len(ids))


async def test_a_chunk_rides_in_the_decode_pass_of_the_running_rows(
    make_backend: MakeBackend,
) -> None:
    backend = make_backend(prefix_cache_mb=0, prefill_chunk_tokens=32)
    story = Prompt(text="Once upon a time")
    alone = await backend.generate(story, LONG_GREEDY)
    long_prompt = chat("Go on", system=LONG_SYSTEM)
    long_ids = await backend._encode.encode(long_prompt)
    out = backend.model.generate(torch.tensor([long_ids]), max_new_tokens=24, do_sample=False)
    expected = backend.tokenizer.decode(out[0, len(long_ids) :].tolist(), skip_special_tokens=True)
    running = backend.stream(story, LONG_GREEDY)
    parts = [await anext(running)]
    passes = ForwardPasses(backend.model)
    try:
        assert (await backend.generate(long_prompt, GREEDY)).text == expected
    finally:
        passes.remove()
    parts += [event async for event in running]
    # The running row's own answer is untouched by the chunks riding in its passes.
    assert "".join(p.text for p in parts if isinstance(p, TextDelta)) == alone.text
    chunks = passes.chunks()
    # Each pass carries the running row's token and what it leaves of 32 to the prompt,
    # less as the chunk sits later; no decode pass of its own runs between them.
    sizes, done = [], 0
    while done < len(long_ids):
        sizes.append(min(backend._prefill.beside(1, done), len(long_ids) - done))
        done += sizes[-1]
    assert [passes.shapes[i][1] - 1 for i in chunks] == sizes
    assert sizes[0] == 31 > sizes[-2]
    assert int(backend.status().details["mixed_steps"]) == len(chunks)
    assert chunks == list(range(chunks[0], chunks[0] + len(chunks)))


async def test_decoding_rows_count_against_the_tokens_of_a_mixed_pass(
    make_backend: MakeBackend,
) -> None:
    backend = make_backend(prefix_cache_mb=0, prefill_chunk_tokens=12)
    beside = backend._prefill.beside
    assert [beside(rows, 0) for rows in (0, 3, 6, 7, 12)] == [12, 9, 6, 6, 6]
    # Later chunks attend to more: at the end of the context window a chunk is half.
    limit = backend._context_length
    assert [beside(0, limit // 2), beside(0, limit), beside(3, limit)] == [9, 6, 5]
    long_prompt = chat("Go on", system=LONG_SYSTEM)
    long_ids = await backend._encode.encode(long_prompt)
    out = backend.model.generate(torch.tensor([long_ids]), max_new_tokens=24, do_sample=False)
    expected = backend.tokenizer.decode(out[0, len(long_ids) :].tolist(), skip_special_tokens=True)
    stories = [Prompt(text=f"Once upon a time there were {n} clocks") for n in (2, 3, 4)]
    alone = [await backend.generate(story, LONG_GREEDY) for story in stories]
    running = [backend.stream(story, LONG_GREEDY) for story in stories]
    parts = [[await anext(stream)] for stream in running]
    passes = ForwardPasses(backend.model)
    try:
        assert (await backend.generate(long_prompt, GREEDY)).text == expected
    finally:
        passes.remove()
    for stream, got in zip(running, parts, strict=True):
        got += [event async for event in stream]
    texts = ["".join(p.text for p in got if isinstance(p, TextDelta)) for got in parts]
    assert texts == [completion.text for completion in alone]
    # However many of the three rows still decode, a pass carries at most 12 tokens in
    # all: the prompt takes more passes than chunks of 12 on top of the rows would.
    chunks = passes.chunks()
    assert len(chunks) > -(-len(long_ids) // 12)
    assert all(passes.shapes[i][1] <= 12 for i in chunks)


async def test_without_mixed_passes_rows_decode_between_the_chunks_of_a_long_prompt(
    make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A model that cannot take mixed passes (sliding-window layers, another attention).
    monkeypatch.setattr(mixed_step, "enable", lambda _model: False)
    backend = make_backend(prefix_cache_mb=0, prefill_chunk_tokens=32)
    long_prompt = chat("Go on", system=LONG_SYSTEM)
    long_ids = await backend._encode.encode(long_prompt)
    _, passes = await while_a_row_decodes(backend, long_prompt)
    chunks = passes.chunks()
    assert len(chunks) == -(-len(long_ids) // 32)
    assert all(passes.shapes[i][1] <= 32 for i in chunks)
    assert backend.status().details["mixed_steps"] == "0"
    # Between two chunks the running row took a decode step (one token per row).
    for first, second in itertools.pairwise(chunks):
        assert (1, 1) in passes.shapes[first + 1 : second]


async def test_a_failed_copy_of_cached_blocks_computes_the_whole_prompt(
    make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached, plain = make_backend(prefix_cache_mb=16), make_backend(prefix_cache_mb=0)
    await cached.generate(chat("warm the cache up"), GREEDY)

    def fails(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("injected: out of memory")

    monkeypatch.setattr(RoomyLayer, "preload", fails)
    prompt = chat(QUESTIONS[0])
    assert await cached.generate(prompt, GREEDY) == await plain.generate(prompt, GREEDY)
    assert stats(cached).hit_tokens > 0  # the blocks matched; copying them failed
