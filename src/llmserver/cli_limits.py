"""The limit options of ``llmserver keys``: a limit (``N`` or ``none``) and a key's limits
on one model (``--model-limit MODEL:rpm=5,tpm=1000,quota=50000``, repeatable;
``MODEL:none`` removes them)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict

import click

from llmserver.domain.edits import Keep
from llmserver.domain.key_models import ModelLimitsEdit

_MODEL_LIMIT_NAMES = {"rpm": "rpm_limit", "tpm": "tpm_limit", "quota": "quota_tokens"}
"""``--model-limit``'s short names of ``ModelLimit``'s fields."""
_SHORT_NAMES = {field: short for short, field in _MODEL_LIMIT_NAMES.items()}


def model_limits_text(limits: Mapping[str, Mapping[str, int | None]]) -> str:
    """A key's model limits as ``--model-limit`` takes them (``model:rpm=5,quota=0; ...``),
    the limits it has only; "-" for none."""
    return (
        "; ".join(
            f"{model}:"
            + ",".join(f"{_SHORT_NAMES[k]}={v}" for k, v in limit.items() if v is not None)
            for model, limit in limits.items()
        )
        or "-"
    )


class _Limit(click.ParamType[int | Keep | None, Any]):
    """A limit for ``keys update``: a whole number, or ``none`` for no limit."""

    name = "N|none"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> int | Keep | None:
        if isinstance(value, Keep):  # the option left out
            return value
        try:
            return _limit_value(str(value))
        except ValueError:
            self.fail(f"{value!r} is neither a whole number nor 'none'", param, ctx)


def _limit_value(text: str) -> int | None:
    """A whole number, or ``None`` for ``none``; ``ValueError`` for anything else."""
    text = text.strip().lower()
    if text in ("none", "unlimited"):
        return None
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


_OPTIONS = (
    ("--quota-tokens", "quota_tokens", "Monthly tokens", "quota"),
    ("--rpm", "rpm_limit", "Requests per minute", "rpm"),
    ("--tpm", "tpm_limit", "Tokens per minute", None),
    ("--max-parallel", "max_parallel", "Requests in flight", None),
)
"""Each limit's flag, the domain's name for it, what it counts, and which role default it
takes when a new key leaves it out (``None``: none)."""


def _folded(command: Callable[..., None]) -> Callable[..., None]:
    """``command`` taking the four limits as one ``limits`` argument by the domain's names."""

    @functools.wraps(command)
    def with_limits(*args: Any, **kwargs: Any) -> None:
        limits = {field: kwargs.pop(field) for _, field, _, _ in _OPTIONS}
        command(*args, limits=limits, **kwargs)

    return with_limits


class EditedLimits(TypedDict):
    """What ``edited_limit_options`` gives its command, as a key's or a team's edit takes it."""

    quota_tokens: int | Keep | None
    rpm_limit: int | Keep | None
    tpm_limit: int | Keep | None
    max_parallel: int | Keep | None


def edited_limit_options(command: Callable[..., None]) -> Callable[..., None]:
    """``--quota-tokens``, ``--rpm``, ``--tpm`` and ``--max-parallel`` of an edit (of a key
    or a team), folded into one ``limits`` argument (``KEEP``: not given; 'none': no
    limit)."""
    with_limits = _folded(command)
    for flag, field, what, _ in reversed(_OPTIONS):
        with_limits = click.option(
            flag, field, type=_Limit(), default=Keep.KEEP, help=f"{what}; 'none': no limit."
        )(with_limits)
    return with_limits


def new_limit_options(
    *, defaults: str = "none"
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``--quota-tokens``, ``--rpm``, ``--tpm`` and ``--max-parallel`` of a new key or team,
    folded into one ``limits`` argument by the domain's names (``None``: not given)."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        with_limits = _folded(command)
        for flag, field, what, by_role in reversed(_OPTIONS):
            default = "role default" if by_role and defaults == "role" else "default: none"
            with_limits = click.option(
                flag, field, type=click.IntRange(min=0), help=f"{what} ({default})."
            )(with_limits)
        return with_limits

    return decorate


model_limit_option = click.option(
    "--model-limit",
    multiple=True,
    metavar="MODEL:rpm=N,tpm=N,quota=N|MODEL:none",
    help="The key's own limits on one model, on top of its own (repeatable): requests and "
    "tokens per minute, tokens per month; a limit left out or 'none' is no limit of that "
    "kind; MODEL:none removes the model's limits.",
)


def model_limits_edit(options: Sequence[str]) -> ModelLimitsEdit:
    """``--model-limit`` values as an edit; a bad one is a usage error naming it."""
    edit: dict[str, dict[str, int | None] | None] = {}
    for option in options:
        # The last colon: a model id may hold colons (llama3:8b), a limit list never does.
        model, _, spec = option.rpartition(":")
        if not model.strip() or not spec.strip():
            raise click.BadParameter(
                f"{option!r}: expected MODEL:rpm=N,tpm=N,quota=N or MODEL:none",
                param_hint="--model-limit",
            )
        if spec.strip().lower() == "none":
            edit[model.strip()] = None
            continue
        limits: dict[str, int | None] = {}
        for item in spec.split(","):
            name, _, value = item.partition("=")
            field = _MODEL_LIMIT_NAMES.get(name.strip().lower())
            try:
                if field is None:
                    raise ValueError(name)
                limits[field] = _limit_value(value)
            except ValueError:
                raise click.BadParameter(
                    f"{option!r}: {item.strip()[:40]!r} is not rpm=N, tpm=N or quota=N (N a "
                    "whole number or 'none')",
                    param_hint="--model-limit",
                ) from None
        edit[model.strip()] = limits
    return edit
