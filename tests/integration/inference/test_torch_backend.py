"""The torch backend on the tiny demo model: exactness, sampling, batching, admission."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace

import pytest

from llmserver.domain.errors import (
    ContextLengthExceeded,
    GenerationTimeout,
    Overloaded,
    Unavailable,
)
from llmserver.domain.inference import (
    ChatMessage,
    FinishReason,
    GenerationParams,
    Prompt,
    StreamEnd,
    StreamEvent,
    TextDelta,
)
from llmserver.domain.registry import ModelSpec

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from llmserver.adapters.inference.kv_cache import RoomyLayer  # noqa: E402
from llmserver.adapters.inference.torch_backend import TorchBackend  # noqa: E402

pytestmark = pytest.mark.torch

CHAT = Prompt(messages=(ChatMessage("system", "Be brief."), ChatMessage("user", "Hello there")))
TEXT = Prompt(text="Once upon a time")
LONG = GenerationParams(max_tokens=480, temperature=1.0, seed=1)

MakeBackend = Callable[..., TorchBackend]


@pytest.fixture
async def make_backend(demo_spec: ModelSpec) -> AsyncIterator[MakeBackend]:
    made: list[TorchBackend] = []

    def make(**options: object) -> TorchBackend:
        settings: dict[str, object] = {
            "threads": None,
            "max_batch_size": 8,
            "max_queue": 16,
            "request_timeout_s": 60.0,
        }
        settings.update(options)
        backend = TorchBackend(demo_spec, **settings)  # type: ignore[arg-type]
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.close()


@pytest.fixture
def backend(make_backend: MakeBackend) -> TorchBackend:
    return make_backend()


async def collect(stream: AsyncIterator[StreamEvent]) -> tuple[list[TextDelta], StreamEnd]:
    deltas: list[TextDelta] = []
    async for event in stream:
        if isinstance(event, TextDelta):
            deltas.append(event)
        elif isinstance(event, StreamEnd):
            return deltas, event
    raise AssertionError("no StreamEnd")


async def wait_until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(30):
        while not condition():
            await asyncio.sleep(0.005)


@asynccontextmanager
async def first_event(
    backend: TorchBackend, params: GenerationParams
) -> AsyncIterator[AsyncIterator[StreamEvent]]:
    """A stream that has started generating (its first event has arrived)."""
    stream = backend.stream(TEXT, params)
    await anext(stream)
    try:
        yield stream
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize("prompt", [CHAT, TEXT], ids=["chat", "text"])
async def test_greedy_equals_model_generate(backend: TorchBackend, prompt: Prompt) -> None:
    ids = await backend._encode.encode(prompt)
    out = backend.model.generate(torch.tensor([ids]), max_new_tokens=48, do_sample=False)
    expected_ids = out[0, len(ids) :].tolist()
    completion = await backend.generate(prompt, GenerationParams(max_tokens=48, temperature=0))
    assert completion.text == backend.tokenizer.decode(expected_ids, skip_special_tokens=True)
    assert completion.completion_tokens == len(expected_ids)


async def test_prompt_tokens_are_exact(backend: TorchBackend) -> None:
    expected = backend.tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
    )
    assert await backend.count_tokens(CHAT) == len(expected)
    _, end = await collect(backend.stream(CHAT, GenerationParams(max_tokens=5)))
    assert end.prompt_tokens == len(expected)
    assert await backend.count_tokens(TEXT) == len(backend.tokenizer("Once upon a time").input_ids)


async def test_counting_then_streaming_renders_the_template_once(
    backend: TorchBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    render = backend.tokenizer.apply_chat_template
    renders: list[object] = []

    def counted(*args: object, **kwargs: object) -> object:
        renders.append(args)
        return render(*args, **kwargs)

    monkeypatch.setattr(backend.tokenizer, "apply_chat_template", counted)
    prompt = Prompt(messages=(ChatMessage("user", "Count me once"),))
    counted_tokens = await backend.count_tokens(prompt)
    _, end = await collect(backend.stream(prompt, GenerationParams(max_tokens=3)))
    assert end.prompt_tokens == counted_tokens
    assert len(renders) == 1


async def test_length_finish_counts_every_token(backend: TorchBackend) -> None:
    deltas, end = await collect(backend.stream(CHAT, GenerationParams(max_tokens=17, seed=3)))
    assert end.finish_reason is FinishReason.LENGTH
    assert end.completion_tokens == 17
    assert sum(d.tokens for d in deltas) <= 17
    assert all(d.text for d in deltas)


async def test_same_seed_same_text(backend: TorchBackend) -> None:
    params = GenerationParams(max_tokens=40, temperature=1.0, seed=42)
    first = await backend.generate(CHAT, params)
    again = await backend.generate(CHAT, params)
    other = await backend.generate(CHAT, GenerationParams(max_tokens=40, seed=43))
    assert first == again
    assert other.text != first.text


async def test_tiny_top_p_keeps_only_the_most_likely_token(backend: TorchBackend) -> None:
    greedy = await backend.generate(CHAT, GenerationParams(max_tokens=24, temperature=0))
    nucleus = await backend.generate(CHAT, GenerationParams(max_tokens=24, top_p=1e-6, seed=9))
    assert nucleus.text == greedy.text


async def test_seed_reproduces_inside_a_batch(backend: TorchBackend) -> None:
    alone = [
        await backend.generate(CHAT, GenerationParams(max_tokens=32, seed=s)) for s in range(4)
    ]
    together = await asyncio.gather(
        *(backend.generate(CHAT, GenerationParams(max_tokens=32, seed=s)) for s in range(4))
    )
    assert [c.text for c in together] == [c.text for c in alone]


async def test_padded_rows_compute_what_lone_rows_compute(backend: TorchBackend) -> None:
    prompts = [Prompt(text="x " * n + "Once") for n in (1, 6, 17, 40)]
    for params in (GenerationParams(max_tokens=24, temperature=0), GenerationParams(max_tokens=24)):
        alone = [await backend.generate(p, replace(params, seed=i)) for i, p in enumerate(prompts)]
        together = await asyncio.gather(
            *(backend.generate(p, replace(params, seed=i)) for i, p in enumerate(prompts))
        )
        assert [c.text for c in together] == [c.text for c in alone]
    assert backend.max_rows_per_step == len(prompts)


async def test_stop_string_across_token_boundaries(backend: TorchBackend) -> None:
    params = GenerationParams(max_tokens=60, temperature=1.0, seed=5)
    deltas, _ = await collect(backend.stream(CHAT, params))
    # A stop string straddling two deltas (so two tokens) of the unconstrained output.
    joint = next(i for i in range(1, len(deltas)) if len(deltas[i - 1].text + deltas[i].text) > 3)
    before = "".join(d.text for d in deltas[: joint - 1])
    stop = deltas[joint - 1].text[-2:] + deltas[joint].text[:2]
    full = before + deltas[joint - 1].text + deltas[joint].text
    expected = full[: full.find(stop)]

    stopped, end = await collect(backend.stream(CHAT, replace(params, stop=(stop, "never-seen"))))
    assert end.finish_reason is FinishReason.STOP
    text = "".join(d.text for d in stopped)
    assert text == expected
    assert stop not in text


async def test_concurrent_requests_are_batched(backend: TorchBackend) -> None:
    results = await asyncio.gather(
        *(backend.generate(TEXT, GenerationParams(max_tokens=40, seed=i)) for i in range(4))
    )
    assert all(r.completion_tokens == 40 for r in results)
    assert backend.max_rows_per_step > 1
    assert backend.status().details["max_rows_per_step"] == str(backend.max_rows_per_step)


async def test_full_queue_is_refused_and_reported(make_backend: MakeBackend) -> None:
    backend = make_backend(max_batch_size=1, max_queue=1)
    async with first_event(backend, LONG):
        waiting = asyncio.create_task(backend.generate(TEXT, GenerationParams(max_tokens=3)))
        await wait_until(lambda: backend.status().queue_depth == 1)
        with pytest.raises(Overloaded, match="busy"):
            await backend.generate(TEXT, GenerationParams(max_tokens=3))
    # Closing the running stream frees the only row, so the waiting request runs.
    assert (await waiting).completion_tokens == 3


async def test_cancelled_waiting_request_frees_its_queue_slot(make_backend: MakeBackend) -> None:
    backend = make_backend(max_batch_size=1, max_queue=1)
    async with first_event(backend, LONG):
        waiting = asyncio.create_task(backend.generate(TEXT, GenerationParams(max_tokens=3)))
        await wait_until(lambda: backend.status().queue_depth == 1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert backend.status().queue_depth == 0
        replacement = asyncio.create_task(backend.generate(TEXT, GenerationParams(max_tokens=3)))
        await wait_until(lambda: backend.status().queue_depth == 1)
    assert (await replacement).completion_tokens == 3


async def test_closed_stream_leaves_the_batch(backend: TorchBackend) -> None:
    async with first_event(backend, LONG):
        await wait_until(lambda: backend.status().details["active"] == "1")
    await wait_until(lambda: backend.status().details["active"] == "0")
    # No forward pass runs once the batch is empty.
    forwards: list[object] = []
    hook = backend.model.register_forward_hook(lambda *_: forwards.append(None))
    try:
        await asyncio.sleep(0.05)
    finally:
        hook.remove()
    assert forwards == []


async def test_timeout_stops_generation(make_backend: MakeBackend) -> None:
    backend = make_backend(request_timeout_s=0.05)
    with pytest.raises(GenerationTimeout, match=r"longer than 0\.05s"):
        await backend.generate(TEXT, LONG)
    await wait_until(lambda: backend.status().details["active"] == "0")


async def test_context_length_is_enforced(backend: TorchBackend) -> None:
    with pytest.raises(ContextLengthExceeded):
        await backend.generate(TEXT, GenerationParams(max_tokens=600))


async def test_closed_backend_refuses(backend: TorchBackend) -> None:
    await backend.close()
    assert not backend.status().ready
    with pytest.raises(Unavailable):
        await backend.generate(TEXT, GenerationParams(max_tokens=3))


def test_in_place_cache_layer_holds_what_concatenation_holds() -> None:
    layer = RoomyLayer(limit=12)
    keys, values = torch.zeros(2, 3, 0, 4), torch.zeros(2, 3, 0, 4)
    for step, length in enumerate((5, 1, 1, 4, 1)):
        new_keys, new_values = torch.randn(2, 3, length, 4), torch.randn(2, 3, length, 4)
        keys, values = torch.cat([keys, new_keys], dim=2), torch.cat([values, new_values], dim=2)
        got_keys, got_values = layer.update(new_keys, new_values)
        assert torch.equal(got_keys, keys)
        assert torch.equal(got_values, values)
        if step == 1:  # the batch trims a leading column, as ``Batch.keep`` does
            keys, values = keys[:, :, 1:], values[:, :, 1:]
            held_keys, held_values = layer.keys, layer.values
            assert held_keys is not None
            assert held_values is not None
            layer.keys, layer.values = held_keys[:, :, 1:], held_values[:, :, 1:]
    assert layer.get_seq_length() == keys.shape[2] == 11
    held = layer._buffers["keys"]
    assert held is not None
    assert held[0].shape[2] <= 12


def test_a_cache_layer_with_room_for_a_prompt_never_moves_while_it_fills() -> None:
    # A prompt prefilled in chunks gets room for all of it: no chunk's step copies the
    # cache into a bigger buffer (without the room, the 3rd and the 7th chunk would).
    layer, grown = RoomyLayer(limit=64, room=40), RoomyLayer(limit=64)
    moves, grown_moves = set(), set()
    for _ in range(8):
        chunk = torch.randn(1, 2, 5, 4)
        keys, _ = layer.update(chunk, chunk)
        grown_keys, _ = grown.update(chunk, chunk)
        assert torch.equal(keys, grown_keys)
        moves.add(keys.data_ptr())
        grown_moves.add(grown_keys.data_ptr())
    assert len(moves) == 1
    assert len(grown_moves) == 3
    held = layer._buffers["keys"]
    assert held is not None
    assert held[0].shape[2] == 40


def test_unavailable_device_is_a_clear_error(demo_spec: ModelSpec) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        TorchBackend(replace(demo_spec, device="cuda"))
