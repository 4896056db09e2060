from __future__ import annotations

from pathlib import Path

import pytest

from llmserver.adapters.inference.demo_model import MARKER_FILE, build_demo_model, is_built

pytestmark = pytest.mark.torch


def test_build_is_idempotent(demo_model_dir: Path) -> None:
    weights = demo_model_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    messages: list[str] = []
    assert build_demo_model(demo_model_dir, progress=messages.append) == demo_model_dir
    assert weights.stat().st_mtime_ns == before
    assert messages == []  # `make run` builds on every start: an up-to-date model is silent
    assert not is_built(demo_model_dir, "bench")


def test_build_is_deterministic(demo_model_dir: Path, tmp_path: Path) -> None:
    again = build_demo_model(tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json", MARKER_FILE):
        assert (again / name).read_bytes() == (demo_model_dir / name).read_bytes(), name


def test_reloads_offline_with_a_chat_template(demo_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(demo_model_dir)
    model = AutoModelForCausalLM.from_pretrained(demo_model_dir)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False
    )
    assert text == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert tokenizer.eos_token == "<|eot_id|>"
    assert tokenizer.pad_token == "<|pad|>"
    assert len(tokenizer) == model.config.vocab_size
    assert 400_000 <= model.num_parameters() <= 2_000_000
    assert tokenizer.decode(tokenizer("café 東京 🙂")["input_ids"]) == "café 東京 🙂"


def test_an_interrupted_build_is_rebuilt(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "config.json").write_text("{}")
    build_demo_model(target)
    assert is_built(target)
    assert (target / "model.safetensors").is_file()
