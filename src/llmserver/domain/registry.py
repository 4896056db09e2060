"""The model registry: which models exist, under which names, served by which backend."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from llmserver.domain.errors import ModelNotFound
from llmserver.domain.pricing import FREE, Prices

MODEL_ID_MAX_CHARS = 200
"""The longest model id a model may be configured with: what the request log and the
response cache store. A request naming a longer (so unknown) model is logged cut to it."""


DTYPES = ("auto", "float32", "float16", "bfloat16")
"""What a torch model's weights may be loaded as; ``auto`` is float32 on CPU, float16 on a GPU."""
QUANTIZE_MODES = ("none", "int8")
"""``int8``: torch's dynamic int8 for linear layers (CPU only, float32 activations)."""


class BackendKind(StrEnum):
    TORCH = "torch"
    MLX = "mlx"
    HTTP = "http"


class ModelKind(StrEnum):
    """Which API surfaces a model serves."""

    CHAT = "chat"
    """Text generation: chat completions and completions."""
    EMBEDDING = "embedding"
    """Vectors: embeddings."""


CAPABILITIES: dict[ModelKind, tuple[str, ...]] = {
    ModelKind.CHAT: ("chat", "completions"),
    ModelKind.EMBEDDING: ("embeddings",),
}
"""What ``/v1/models`` reports a model of each kind can do."""


class Pooling(StrEnum):
    """How an embedding model's token states become one vector."""

    MODEL = "model"
    """The model's own (a sentence-transformers ``1_Pooling/config.json``), else mean."""
    MEAN = "mean"
    """The mean of the real (unpadded) tokens' states."""
    CLS = "cls"
    """The first token's state."""


@dataclass(frozen=True, slots=True)
class ModelDefaults:
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0


class Routing(StrEnum):
    """How a model with several deployments picks the one a request goes to first."""

    WEIGHTED = "weighted"
    """At random, in proportion to each deployment's ``weight``."""
    LEAST_BUSY = "least-busy"
    """The one with the fewest requests in flight."""
    LATENCY = "latency"
    """The one with the lowest moving average of time to first token."""
    ORDERED = "ordered"
    """The first in config order that is healthy and has a free slot (spill-over)."""


DEPLOYMENT_NAME_MAX_CHARS = 64
SERVED_BY_MAX_CHARS = MODEL_ID_MAX_CHARS + 1 + DEPLOYMENT_NAME_MAX_CHARS
"""The longest ``served_by`` a log row holds: ``fallback-model/deployment``."""


@dataclass(frozen=True, slots=True)
class DeploymentSpec:
    """One place a model is served: a backend, its source, and its own limits."""

    name: str
    """Unique within its model; a metric label and the request log's ``deployment``."""
    backend: BackendKind
    source: str
    upstream_model: str | None = None
    api_key_env: str | None = None
    weight: int = 1
    max_parallel: int | None = None
    """Requests in flight at most; ``None``: no cap of its own."""
    connect_timeout_s: float | None = None
    """``None`` for these three: the server's defaults (``LLMSERVER_ROUTING_*``)."""
    first_byte_timeout_s: float | None = None
    total_timeout_s: float | None = None
    prices: Prices | None = None
    """What its tokens cost where they differ from the model's; ``None``: the model's."""
    probe_interval_s: float | None = None
    """Seconds between active health probes (``http`` only); ``None``: none, its health
    is what its requests show."""
    probe_path: str | None = None
    """The path probed on its ``source``; ``None``: its API base's ``/models``."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    id: str
    backend: BackendKind
    source: str
    """A hub id, a local directory, or (for ``http``) the upstream base URL."""
    aliases: tuple[str, ...] = ()
    revision: str = "main"
    context_length: int = 4096
    device: str = "auto"
    dtype: str = "auto"
    quantize: str = "none"
    """One of ``QUANTIZE_MODES``: how a torch model's linear layers are stored and run."""
    max_batch_size: int | None = None
    """Rows this model runs together; unset: the server's ``max_batch_size``, except an MLX
    model on MLX's CPU device, which runs one (batching did not pay there in ``make bench``)."""
    defaults: ModelDefaults = field(default_factory=ModelDefaults)
    upstream_model: str | None = None
    """For ``http``: the model name the upstream knows (defaults to ``id``)."""
    api_key_env: str | None = None
    """For ``http``: the environment variable holding the upstream API key."""
    owned_by: str = "llmserver"
    kind: ModelKind = ModelKind.CHAT
    pooling: Pooling = Pooling.MODEL
    """For embedding models."""
    normalize: bool = True
    """For embedding models: scale each vector to unit length (cosine = dot product)."""
    matryoshka: bool = False
    """For embedding models: a request may ask for fewer ``dimensions`` (the vector is cut,
    then scaled back to unit length), which only Matryoshka-trained models make sense of."""
    prices: Prices = FREE
    """What its tokens cost (``input_price_per_mtok``, ``output_price_per_mtok`` in the
    models file); free unless configured."""
    deployments: tuple[DeploymentSpec, ...] = ()
    """Where it is served when more than one place; empty: ``backend`` at ``source`` only.
    With deployments, ``backend`` and ``source`` are the first one's (what a trace names)."""
    routing: Routing = Routing.WEIGHTED
    fallbacks: tuple[str, ...] = ()
    """Models (ids) tried in order when every deployment failed before the first byte."""
    context_fallback: str | None = None
    """The model (id) a prompt too long for this one goes to instead of a refusal."""

    @property
    def capabilities(self) -> tuple[str, ...]:
        return CAPABILITIES[self.kind]

    def prices_at(self, deployment: DeploymentSpec) -> Prices:
        """What a request one of its deployments answers costs: its own prices, if set."""
        return self.prices if deployment.prices is None else deployment.prices

    def served_prices(self) -> frozenset[Prices]:
        """Every price its own deployments may charge a request at."""
        return frozenset(self.prices_at(d) for d in self.deployments) or frozenset((self.prices,))


DEMO_MODEL_ID = "demo-tiny-llama"
DEMO_EMBEDDING_MODEL_ID = "demo-embed"
DEMO_EMBEDDING_SUBDIR = "embedding"
"""The demo embedding model is built inside the demo model's folder, so every place that
builds or names the one has the other."""


def profile_models(profile: str, *, demo_model_dir: str) -> tuple[ModelSpec, ...]:
    """The models a named profile serves."""
    profiles: dict[str, tuple[ModelSpec, ...]] = {
        "demo": (
            ModelSpec(
                id=DEMO_MODEL_ID,
                aliases=("demo",),
                backend=BackendKind.TORCH,
                source=demo_model_dir,
                revision="demo-v1",
                context_length=512,
                device="cpu",
                dtype="float32",
                defaults=ModelDefaults(max_tokens=64),
            ),
            ModelSpec(
                id=DEMO_EMBEDDING_MODEL_ID,
                backend=BackendKind.TORCH,
                source=f"{demo_model_dir}/{DEMO_EMBEDDING_SUBDIR}",
                revision="demo-embed-v1",
                context_length=512,
                device="cpu",
                dtype="float32",
                kind=ModelKind.EMBEDDING,
                pooling=Pooling.MEAN,
                matryoshka=True,
            ),
        ),
        "cpu": (
            ModelSpec(
                id="meta-llama/Llama-3.2-1B-Instruct",
                aliases=("llama-3.2-1b",),
                backend=BackendKind.TORCH,
                source="meta-llama/Llama-3.2-1B-Instruct",
                context_length=8192,
                device="cpu",
                dtype="bfloat16",
            ),
        ),
        "local": (
            ModelSpec(
                id="mlx-community/Meta-Llama-3.1-8B-Instruct-4bit",
                aliases=("llama-3.1-8b",),
                backend=BackendKind.MLX,
                source="mlx-community/Meta-Llama-3.1-8B-Instruct-4bit",
                context_length=8192,
            ),
        ),
        "none": (),
    }
    if profile not in profiles:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(profiles)}")
    return profiles[profile]


PROFILES = ("demo", "cpu", "local", "none")


class ModelRegistry:
    """Resolves a requested model name (id or alias) to its spec."""

    def __init__(self, specs: Iterable[ModelSpec]) -> None:
        self._specs: dict[str, ModelSpec] = {}
        self._names: dict[str, str] = {}
        for spec in specs:
            if len(spec.id) > MODEL_ID_MAX_CHARS:
                raise ValueError(
                    f"model id {spec.id[:40]!r}... is longer than {MODEL_ID_MAX_CHARS} characters"
                )
            if spec.id in self._specs:
                raise ValueError(f"model {spec.id!r} is configured twice")
            self._specs[spec.id] = spec
            for name in (spec.id, *spec.aliases):
                if name in self._names and self._names[name] != spec.id:
                    raise ValueError(f"model name {name!r} is used by two models")
                self._names[name] = spec.id

        self._check_fallbacks()
        self._charged = self._charged_prices()

    def _check_fallbacks(self) -> None:
        """A fallback names another configured chat model; a context fallback a longer one."""
        for spec in self._specs.values():
            named = [("fallbacks", target) for target in spec.fallbacks]
            if spec.context_fallback is not None:
                named.append(("context_fallback", spec.context_fallback))
            for field_name, target in named:
                other = self._specs.get(target)
                if other is None or target == spec.id or other.kind is not spec.kind:
                    raise ValueError(
                        f"model {spec.id!r}: field {field_name!r} names {target!r}, which is "
                        f"not another configured {spec.kind.value} model"
                    )
                if field_name == "context_fallback" and other.context_length <= spec.context_length:
                    raise ValueError(
                        f"model {spec.id!r}: field 'context_fallback' names {target!r}, whose "
                        f"context_length ({other.context_length}) is not longer than its own "
                        f"({spec.context_length})"
                    )

    def _charged_prices(self) -> dict[str, tuple[Prices, ...]]:
        """For each model whose requests may be charged at other prices than its own (a
        deployment's, a fallback's): every price it may be; a model charged only at its
        own has no entry."""
        charged: dict[str, tuple[Prices, ...]] = {}
        for spec in self._specs.values():
            options = {spec.prices, *spec.served_prices()}
            for target in spec.fallbacks:
                options.update(self._specs[target].served_prices())
            if len(options) > 1:
                charged[spec.id] = tuple(options)
        return charged

    def worst_cost(self, spec: ModelSpec, prompt_tokens: int, max_tokens: int) -> int:
        """The most a request to ``spec`` may cost (``Prices.worst_case``) wherever it ends
        up: any of its deployments, any of its fallbacks' (what a budget reserves, so that
        settling at what answered never exceeds the hold)."""
        options = self._charged.get(spec.id)
        if options is None:
            return spec.prices.worst_case(prompt_tokens, max_tokens)
        return max(prices.worst_case(prompt_tokens, max_tokens) for prices in options)

    def resolve(self, name: str) -> ModelSpec:
        model_id = self._names.get(name)
        if model_id is None:
            raise ModelNotFound(name)
        return self._specs[model_id]

    def all(self) -> tuple[ModelSpec, ...]:
        return tuple(self._specs.values())

    @property
    def by_id(self) -> Mapping[str, ModelSpec]:
        return self._specs
