"""Build the demo model: a random-weight Llama with a locally trained tokenizer.

Everything is made here, offline and deterministically: a byte-level BPE trained on
``corpus.txt`` (shipped next to this module), wrapped as a transformers fast tokenizer
with a Llama-3-style chat template, and a ``LlamaForCausalLM`` initialised from a fixed
seed. The directory reloads through ``from_pretrained`` with ``HF_HUB_OFFLINE=1`` and
through ``mlx_lm.load``. The model emits random text: it exists so the server, the tests
and the benchmarks run without any hub access. The demo embedding model, a random encoder
on the same tokenizer, is built into its ``embedding`` folder (``demo_embedding_model``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from llmserver.adapters.inference.demo_embedding_model import ENCODER_SHAPES, save_demo_encoder
from llmserver.domain.registry import DEMO_EMBEDDING_SUBDIR

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

DemoSize = Literal["tiny", "bench"]

DEMO_VERSION = "demo-v2"
"""v2: the chat template renders tools (the weights and tokenizer are v1's)."""
MARKER_FILE = "llmserver-demo.json"
SEED = 1234

BOS = "<|begin_of_text|>"
EOS = "<|eot_id|>"
END_OF_TEXT = "<|end_of_text|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = (BOS, END_OF_TEXT, PAD, "<|start_header_id|>", "<|end_header_id|>", EOS)

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if tools %}"
    "{{ '<|start_header_id|>system<|end_header_id|>\n\n' }}"
    "{{ 'You can call these functions. To call one, answer with JSON only: "
    '{"name": function name, "parameters": dictionary of argument name and its value}'
    "; for several calls, a JSON list of such objects.\n\n' }}"
    "{% for tool in tools %}{{ tool | tojson }}{{ '\n\n' }}{% endfor %}"
    "{{ '<|eot_id|>' }}"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'tool' %}"
    "{{ '<|start_header_id|>ipython<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}"
    "{% elif message['tool_calls'] is defined and message['tool_calls'] %}"
    "{% set calls = message['tool_calls'] %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% if calls | length > 1 %}{{ '[' }}{% endif %}"
    "{% for call in calls %}"
    "{% if not loop.first %}{{ ', ' }}{% endif %}"
    "{{ '{\"name\": ' + (call['function']['name'] | tojson) + ', \"parameters\": '"
    " + (call['function']['arguments'] | tojson) + '}' }}"
    "{% endfor %}"
    "{% if calls | length > 1 %}{{ ']' }}{% endif %}"
    "{{ '<|eot_id|>' }}"
    "{% else %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] + '<|eot_id|>' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)
"""Llama 3's chat format, with tools in Llama 3.1's JSON style: the functions listed in a
system turn with the instruction to answer with ``{"name": ..., "parameters": ...}`` (a
list for several calls), an assistant turn's calls written that way, a tool result in an
``ipython`` turn. A conversation without tools renders exactly as before tools existed."""


@dataclass(frozen=True, slots=True)
class _Shape:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int
    tie_word_embeddings: bool


_SHAPES: dict[DemoSize, _Shape] = {
    "tiny": _Shape(1024, 128, 256, 2, 4, 2, 512, True),
    "bench": _Shape(4096, 768, 2304, 12, 12, 12, 2048, False),
}


def _marker(size: DemoSize) -> dict[str, object]:
    return {
        "version": DEMO_VERSION,
        "size": size,
        "seed": SEED,
        "shape": asdict(_SHAPES[size]),
        "embedding_shape": asdict(ENCODER_SHAPES[size]),
    }


def is_built(target_dir: Path, size: DemoSize = "tiny") -> bool:
    marker = target_dir / MARKER_FILE
    if not marker.is_file():
        return False
    try:
        return bool(json.loads(marker.read_text()) == _marker(size))
    except ValueError:
        return False


def build_demo_model(
    target_dir: Path,
    *,
    size: DemoSize = "tiny",
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Build the demo model into ``target_dir`` (skipped when an identical build exists).

    A skipped build says nothing: ``make run`` calls this on every start, and a line saying
    the model is already there is noise.

    The build happens in a sibling temporary directory that is renamed into place, so a
    crash never leaves a half-written model that looks complete.
    """
    say = progress or (lambda _msg: None)
    target_dir = target_dir.expanduser().resolve()
    if is_built(target_dir, size):
        return target_dir
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-build-", dir=target_dir.parent))
    try:
        shape = _SHAPES[size]
        say(f"training a byte-level BPE tokenizer ({shape.vocab_size} tokens)")
        tokenizer = _train_tokenizer(shape.vocab_size)
        tokenizer.save_pretrained(staging)
        say(f"initialising a random Llama ({size}) with seed {SEED}")
        params = _save_model(staging, shape, tokenizer)
        say(f"saved {params / 1e6:.2f}M parameters")
        say(f"initialising a random BERT encoder ({size}) for the demo embedding model")
        encoder = save_demo_encoder(
            staging / DEMO_EMBEDDING_SUBDIR, ENCODER_SHAPES[size], tokenizer, seed=SEED
        )
        say(f"saved {encoder / 1e6:.2f}M encoder parameters")
        (staging / MARKER_FILE).write_text(json.dumps(_marker(size), indent=2))
        if target_dir.exists():
            shutil.rmtree(target_dir)
        staging.rename(target_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    say(f"demo model ({size}) ready in {target_dir}")
    return target_dir


def _corpus() -> str:
    return resources.files(__package__).joinpath("corpus.txt").read_text(encoding="utf-8")


def _train_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    # The corpus is small, so merges run out before ``vocab_size``: repeating it does not
    # add merges, so the vocabulary is completed with filler tokens below instead.
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_corpus().splitlines(), trainer=trainer)
    missing = vocab_size - backend.get_vocab_size()
    if missing > 0:
        # Filler tokens make the embedding table exactly the requested size. They are not
        # special, so an id a random model samples always decodes to visible text.
        backend.add_tokens([f"<|reserved_{i}|>" for i in range(missing)])
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        chat_template=CHAT_TEMPLATE,
        model_max_length=_max_len(vocab_size),
    )


def _max_len(vocab_size: int) -> int:
    return next(s.max_position_embeddings for s in _SHAPES.values() if s.vocab_size == vocab_size)


def _save_model(target: Path, shape: _Shape, tokenizer: PreTrainedTokenizerFast) -> int:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    vocab = len(tokenizer)
    ids = {name: int(tokenizer.vocab[name]) for name in (BOS, EOS, PAD, END_OF_TEXT)}
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        max_position_embeddings=shape.max_position_embeddings,
        tie_word_embeddings=shape.tie_word_embeddings,
        bos_token_id=ids[BOS],
        eos_token_id=[ids[EOS], ids[END_OF_TEXT]],
        pad_token_id=ids[PAD],
        dtype="float32",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = LlamaForCausalLM(config)
        # A larger init spread than the default makes the random model's next-token
        # distribution less flat, so greedy and sampled text visibly differ.
        with torch.no_grad():
            for param in model.parameters():
                if param.dim() == 2:
                    param.normal_(0.0, 0.05)
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=ids[BOS],
        eos_token_id=[ids[EOS], ids[END_OF_TEXT]],
        pad_token_id=ids[PAD],
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
    )
    model.save_pretrained(target, safe_serialization=True)
    return sum(p.numel() for p in model.parameters())
