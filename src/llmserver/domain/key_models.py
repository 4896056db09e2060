"""Which models a key names: its allowed models, and its own limits per model.

A per-model limit (``ModelLimit``) caps that model's share of the key's traffic in windows
of its own; the key's own limits still cap its total over every model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from llmserver.domain.errors import InvalidRequest, ModelNotFound
from llmserver.domain.key_limits import MODEL_LIMITS, ModelLimit, check_model_limits
from llmserver.domain.registry import MODEL_ID_MAX_CHARS, ModelRegistry

ModelLimitsEdit = Mapping[str, Mapping[str, int | None] | None]
"""Per model (id or alias): its limits by name (``MODEL_LIMITS``), or ``None`` to remove
them."""


def allowed_model_ids(
    models: ModelRegistry,
    names: Sequence[str],
    *,
    allow_unknown: bool = False,
    param: str = "allowed_models",
) -> tuple[str, ...]:
    """The model ids a key may use, from ids or aliases: requests are checked against the
    resolved id, so a key naming an alias would be refused the very model it names.

    Unknown names are refused unless ``allow_unknown`` (a model configured later), in which
    case they are kept as given.
    """
    ids: list[str] = []
    unknown: list[str] = []
    for name in (n.strip() for n in names):
        if not name:
            continue
        if "\x00" in name:  # no model is named so, and PostgreSQL's JSONB cannot store it
            raise InvalidRequest("A model name cannot contain a NUL character.", param=param)
        try:
            ids.append(models.resolve(name).id)
        except ModelNotFound:
            (ids if allow_unknown else unknown).append(name)
    if unknown:
        served = ", ".join(sorted(models.by_id)) or "none"
        raise InvalidRequest(
            f"Unknown model {', '.join(repr(n[:100]) for n in unknown)} in {param} "
            f"(this server serves: {served}). To name a model configured later, allow "
            "unknown models (allow_unknown_models / --allow-unknown-models).",
            param=param,
            code="model_not_found",
        )
    return tuple(dict.fromkeys(ids))


def edited_model_limits(
    models: ModelRegistry,
    current: Sequence[ModelLimit],
    edit: ModelLimitsEdit,
    *,
    allow_unknown: bool = False,
) -> tuple[ModelLimit, ...]:
    """``current`` with ``edit`` applied, sorted by model id: each model named gets the
    limits given (none given, or all ``None``, removes its entry, as ``None`` does); the
    others keep theirs. Refuses, naming ``model_limits``, an unknown model (unless
    ``allow_unknown``), an unknown limit name or a value out of range."""
    known = {name for name, _, _ in MODEL_LIMITS}
    by_id = {limit.model_id: limit for limit in current}
    for name, limits in edit.items():
        (model_id,) = allowed_model_ids(
            models, [name], allow_unknown=allow_unknown, param="model_limits"
        ) or ("",)
        if not model_id or len(model_id) > MODEL_ID_MAX_CHARS:
            raise InvalidRequest(
                f"A model name in model_limits has 1 to {MODEL_ID_MAX_CHARS} characters.",
                param="model_limits",
            )
        if limits is None:
            by_id.pop(model_id, None)
            continue
        if unknown := sorted(set(limits) - known):
            raise InvalidRequest(
                f"Unknown limit {unknown[0][:40]!r} in model_limits[{model_id[:100]!r}]: "
                f"use {', '.join(sorted(known))}.",
                param="model_limits",
            )
        check_model_limits(model_id, limits)
        limit = ModelLimit(
            model_id, limits.get("rpm_limit"), limits.get("tpm_limit"), limits.get("quota_tokens")
        )
        if not any(value is not None for value in limit.limits().values()):
            by_id.pop(model_id, None)
        else:
            by_id[model_id] = limit
    return tuple(sorted(by_id.values(), key=lambda limit: limit.model_id))
