"""The torch embedding backend on the demo encoder: batching across requests, pooling,
normalisation, truncation, token arrays and their checks."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from llmserver.adapters.inference.prompts import OFF_LOOP_CHARS
from llmserver.adapters.inference.torch_embedding_backend import TorchEmbeddingBackend
from llmserver.adapters.inference.torch_embedding_loading import model_pooling, resolve_source
from llmserver.domain.embeddings import floats
from llmserver.domain.errors import InputTooLong, InvalidRequest
from llmserver.domain.registry import BackendKind, ModelKind, ModelSpec, Pooling

pytestmark = pytest.mark.torch

Make = Callable[..., TorchEmbeddingBackend]


@pytest.fixture
async def make(demo_model_dir: Path) -> AsyncIterator[Make]:
    made: list[TorchEmbeddingBackend] = []
    spec = ModelSpec(
        id="demo-embed",
        backend=BackendKind.TORCH,
        source=str(demo_model_dir / "embedding"),
        context_length=512,
        device="cpu",
        kind=ModelKind.EMBEDDING,
        pooling=Pooling.MEAN,
    )

    def build(**changes: object) -> TorchEmbeddingBackend:
        backend = TorchEmbeddingBackend(replace(spec, **changes))  # type: ignore[arg-type]
        made.append(backend)
        return backend

    yield build
    for backend in made:
        await backend.close()


def norm(values: list[float]) -> float:
    return math.sqrt(math.fsum(v * v for v in values))


async def test_concurrent_requests_share_a_forward_pass(make: Make) -> None:
    backend = make()
    texts = [f"request number {i} with a few words" for i in range(12)]
    results = await asyncio.gather(*(backend.embed((t,), None) for t in texts))
    alone = [await backend.embed((t,), None) for t in texts[:3]]
    for together, single in zip(results, alone, strict=False):
        assert floats(together.vectors[0]) == pytest.approx(floats(single.vectors[0]), abs=1e-5)
    assert backend.embedded_inputs == 15
    assert backend.forward_passes < 15
    assert backend.max_requests_per_pass > 1
    assert backend.status().details["forward_passes"] == str(backend.forward_passes)


async def test_pooling_and_normalisation_follow_the_spec(make: Make) -> None:
    text = ("a sentence to pool in two ways",)
    mean = floats((await make().embed(text, None)).vectors[0])
    cls = floats((await make(pooling=Pooling.CLS).embed(text, None)).vectors[0])
    raw = floats((await make(normalize=False).embed(text, None)).vectors[0])
    assert norm(mean) == pytest.approx(1.0, abs=1e-5)
    assert norm(cls) == pytest.approx(1.0, abs=1e-5)
    assert mean != pytest.approx(cls, abs=1e-3)
    assert norm(raw) != pytest.approx(1.0, abs=1e-3)
    assert [v / norm(raw) for v in raw] == pytest.approx(mean, abs=1e-5)


async def test_dimensions_need_a_matryoshka_model(make: Make) -> None:
    with pytest.raises(InvalidRequest, match="does not support"):
        await make().embed(("x",), 8)
    short = floats((await make(matryoshka=True).embed(("x",), 8)).vectors[0])
    assert len(short) == 8
    assert norm(short) == pytest.approx(1.0, abs=1e-5)


async def test_token_ids_are_checked_against_the_vocabulary_and_lengths(make: Make) -> None:
    backend = make(context_length=16)
    with pytest.raises(InvalidRequest, match="vocabulary"):
        await backend.count_tokens(((1, 2, 10**7),))
    with pytest.raises(InputTooLong):
        await backend.count_tokens(("ok", (5,) * 17))
    assert await backend.count_tokens(((5, 6), "")) == [2, 0]


async def test_a_large_batch_is_tokenized_off_the_loop_alike(make: Make) -> None:
    backend = make()
    texts = tuple(f"line {i} " + "word " * 40 for i in range(OFF_LOOP_CHARS // 200))
    assert sum(map(len, texts)) >= OFF_LOOP_CHARS
    counts = await backend.count_tokens(texts)
    embedded = await backend.embed(texts, None)
    assert embedded.prompt_tokens == sum(counts)
    assert len(embedded.vectors) == len(texts)


async def test_a_request_that_leaves_does_not_disturb_the_others(make: Make) -> None:
    backend = make()
    gone = asyncio.ensure_future(backend.embed(("leaving",) * 8, None))
    staying = asyncio.ensure_future(backend.embed(("staying",), None))
    await asyncio.sleep(0)
    gone.cancel()
    result = await staying
    assert len(result.vectors) == 1
    assert backend.status().queue_depth == 0


def test_the_models_own_pooling_is_read_from_its_folder(tmp_path: Path) -> None:
    (tmp_path / "1_Pooling").mkdir()
    config = tmp_path / "1_Pooling" / "config.json"
    config.write_text(json.dumps({"pooling_mode_cls_token": True}))
    assert model_pooling(str(tmp_path), Pooling.MODEL) is Pooling.CLS
    assert model_pooling(str(tmp_path), Pooling.MEAN) is Pooling.MEAN
    config.write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    assert model_pooling(str(tmp_path), Pooling.MODEL) is Pooling.MEAN
    assert model_pooling(str(tmp_path / "none"), Pooling.MODEL) is Pooling.MEAN


def test_a_package_source_names_its_model_folder() -> None:
    with pytest.raises(RuntimeError, match="embeddings-minilm"):
        resolve_source("package:no_such_package_here")
    assert resolve_source("/a/folder") == "/a/folder"
