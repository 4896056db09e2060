"""``--budget-usd`` and ``--budget-window`` for ``llmserver keys create`` and ``update``,
folded into one ``budget`` argument (a ``BudgetChoice``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from llmserver.domain.budget import BudgetWindow, KeyBudget
from llmserver.domain.budget_status import parse_budget_usd
from llmserver.domain.edits import KEEP, Keep
from llmserver.domain.errors import InvalidRequest


@dataclass(frozen=True, slots=True)
class BudgetChoice:
    nanodollars: int | Keep | None
    """``None``: no budget; ``KEEP``: left out (``update``)."""
    window: BudgetWindow | Keep

    def of_new_key(self) -> KeyBudget:
        """``KeyAdmin.create``'s budget (left out: none, by month)."""
        return KeyBudget(
            None if isinstance(self.nanodollars, Keep) else self.nanodollars,
            BudgetWindow.MONTH if isinstance(self.window, Keep) else self.window,
        )


class _Dollars(click.ParamType[int | Keep | None, Any]):
    """A budget in dollars (a decimal such as 25.50), or ``none`` for no budget."""

    name = "USD|none"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> int | Keep | None:
        if isinstance(value, Keep) or value is None:
            return value
        if str(value).strip().lower() == "none":
            return None
        try:
            return parse_budget_usd(str(value))
        except InvalidRequest as exc:
            self.fail(exc.message, param, ctx)


def budget_options(*, creating: bool) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The two options; a new key's window defaults to month, an update keeps it."""

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        @click.option(
            "--budget-usd",
            type=_Dollars(),
            default=None if creating else KEEP,
            help="Spend limit in dollars per budget window; 'none': no budget.",
        )
        @click.option(
            "--budget-window",
            type=click.Choice([w.value for w in BudgetWindow]),
            default="month" if creating else None,
            show_default=creating,
            help="day, week (ISO, from Monday) or month, in UTC.",
        )
        @functools.wraps(command)
        def with_budget(
            *args: Any, budget_usd: int | Keep | None, budget_window: str | None, **kwargs: Any
        ) -> None:
            window = KEEP if budget_window is None else BudgetWindow(budget_window)
            command(*args, budget=BudgetChoice(budget_usd, window), **kwargs)

        return with_budget

    return decorate
