"""A live server with one priced model (``MODEL`` at ``INPUT``/``OUTPUT`` dollars per
million tokens), for the budget and team tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

from livesupport import LiveServer, running_server

MODEL = "priced-demo"
INPUT, OUTPUT = Decimal("0.15"), Decimal("0.6")  # dollars per million tokens


@contextmanager
def priced_server(root: Path, demo_model_dir: Path, **env: str) -> Iterator[LiveServer]:
    models = root / "models.toml"
    models.write_text(
        f'[[models]]\nid = "{MODEL}"\nbackend = "torch"\nsource = "{demo_model_dir}"\n'
        'device = "cpu"\ndtype = "float32"\ncontext_length = 512\n'
        'input_price_per_mtok = "0.15"\noutput_price_per_mtok = 0.6\n'
    )
    with running_server(
        root, demo_model_dir, LLMSERVER_PROFILE="none", LLMSERVER_MODELS_FILE=str(models), **env
    ) as server:
        yield server
