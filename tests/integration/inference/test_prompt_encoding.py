"""The prompt encoder on the demo model's real tokenizer: its floor never exceeds the real
count, a 1 MB prompt is bounded without tokenizing, and large prompts leave the loop free."""

from __future__ import annotations

import asyncio
import random
import string
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from llmserver.adapters.inference.prompts import (
    OFF_LOOP_CHARS,
    PromptEncoder,
    chars_per_token,
    encode_prompt,
)
from llmserver.domain.inference import ChatMessage, Prompt

pytestmark = pytest.mark.torch

MEGABYTE = 1_000_000


@pytest.fixture(scope="module")
def tokenizer(demo_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(demo_model_dir)


def _texts() -> list[str]:
    rng = random.Random(7)
    specials = "<|begin_of_text|><|eot_id|><|reserved_3|><|start_header_id|>"
    return [
        "Once upon a time there was a small model.",
        " " * 4000,
        "a" * 4000,
        specials * 50,
        "".join(rng.choice(string.printable) for _ in range(5000)),
        "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(3000)),
        "é" * 1000 + "\U0001f600" * 500,
    ]


@pytest.mark.parametrize("index", range(len(_texts())))
def test_the_floor_never_exceeds_the_real_count(tokenizer: Any, index: int) -> None:
    encoder = PromptEncoder(tokenizer, "demo")
    text = _texts()[index]
    for prompt in (Prompt(text=text), Prompt(messages=(ChatMessage("user", text),))):
        floor = encoder.floor(prompt)
        assert 0 < floor <= len(encode_prompt(tokenizer, prompt, "demo"))


def test_a_megabyte_prompt_is_bounded_without_the_tokenizer(
    tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = PromptEncoder(tokenizer, "demo")

    def refuse(*args: object, **kwargs: object) -> object:
        raise AssertionError("the floor ran the tokenizer")

    monkeypatch.setattr(tokenizer, "encode", refuse)
    monkeypatch.setattr(tokenizer, "apply_chat_template", refuse)
    per_token = chars_per_token(tokenizer)
    assert per_token == len("<|start_header_id|>")  # the demo vocabulary's longest entry
    prompt = Prompt(messages=(ChatMessage("user", "x" * MEGABYTE),))
    started = time.perf_counter()
    floor = encoder.floor(prompt)
    assert time.perf_counter() - started < 0.01
    assert floor == -(-MEGABYTE // per_token) > 512  # the demo model's context


def test_a_tokenizer_that_strips_text_gives_no_floor() -> None:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    stripping = PreTrainedTokenizerFast(tokenizer_object=backend)  # type: ignore[no-untyped-call]
    assert chars_per_token(stripping) is None
    assert PromptEncoder(stripping, "bert").floor(Prompt(text=" " * MEGABYTE)) == 0


async def test_a_large_prompt_is_tokenized_off_the_event_loop(tokenizer: Any) -> None:
    encoder = PromptEncoder(tokenizer, "demo")
    prompt = Prompt(text="lorem ipsum dolor " * (MEGABYTE // 18))
    lags: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        while not done.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - started - 0.005)

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    ids = await encoder.encode(prompt)
    took = time.perf_counter() - started
    done.set()
    await ticker
    encoder.close()
    assert ids == encode_prompt(tokenizer, prompt, "demo")
    print(
        f"\n1 MB prompt: tokenized in {took * 1000:.0f} ms, loop lag max {max(lags) * 1000:.0f} ms"
    )
    assert len(lags) >= 5  # the loop ran while the tokenizer did
    assert max(lags) < took / 2
    # Remembered on the loop: the backend's encode of the same prompt costs nothing.
    started = time.perf_counter()
    assert await encoder.encode(prompt) == ids
    assert time.perf_counter() - started < 0.05


async def test_a_stream_of_a_large_unknown_prompt_tokenizes_it_off_the_loop(
    tokenizer: Any,
) -> None:
    encoder = PromptEncoder(tokenizer, "demo", max_ids=512)  # too long to be remembered
    prompt = Prompt(text="lorem ipsum " * (OFF_LOOP_CHARS // 4))
    started: list[int] = []

    async def run(ids: list[int]) -> AsyncIterator[int]:
        started.append(len(ids))
        yield len(ids)

    events = encoder.start(prompt, run)
    assert started == []  # nothing tokenized on the caller's (the event loop's) turn
    assert [n async for n in events] == started == [len(encode_prompt(tokenizer, prompt, "d"))]
    encoder.close()
    small = Prompt(text="lorem ipsum")
    assert [n async for n in encoder.start(small, run)] == [started[-1]]  # started at once


async def test_a_small_prompt_is_tokenized_inline(tokenizer: Any) -> None:
    encoder = PromptEncoder(tokenizer, "demo")
    await encoder.encode(Prompt(text="x" * (OFF_LOOP_CHARS - 1)))
    assert encoder._thread is None  # no thread was ever started
