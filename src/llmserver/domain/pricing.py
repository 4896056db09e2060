"""Model prices and request costs, exact: integers of picodollars, never floats.

A price is configured in dollars per million tokens (``input_price_per_mtok``), with at
most ``PRICE_DECIMALS`` decimal places, and held as picodollars (10^-12 dollars) per
token: a price of ``P`` dollars per million tokens is ``P * 10^6`` picodollars per token,
an integer by that bound. A request's cost is then ``tokens * price``, an integer product
with no rounding at all, so a day's or a month's sum is exactly the sum of its requests
(micro-dollars would round every request: a 1-token request at $0.10/MTok costs 0.1 of
one). Prices are converted once, when the models are loaded; the request path multiplies
two integers.

PostgreSQL and SQLite hold a cost in a signed 64-bit column: 9.2 million dollars. With
prices capped at ``MAX_PRICE_PER_MTOK`` a single row (at most 2^31 - 1 tokens of each
kind) stays under 4.3 million dollars; a day's roll-up of one key and model past 9.2
million dollars would overflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

PICODOLLARS_PER_DOLLAR = 10**12
PRICE_DECIMALS = 6
"""Decimal places a price per million tokens may have: $0.000001 per million tokens is one
picodollar per token, the unit costs are counted in."""
MAX_PRICE_PER_MTOK = 1000
"""The highest price, in dollars per million tokens, a model may be given (see the module
docstring for what bounds it)."""
_SCALE = Decimal(10) ** PRICE_DECIMALS


@dataclass(frozen=True, slots=True)
class Prices:
    """A model's prices in picodollars per token; zero for a local model.

    ``cached_input`` is what a prompt token the upstream reports as read from its prompt
    cache costs (``cached_tokens`` of a cost); ``None``: the input price."""

    input: int = 0
    output: int = 0
    cached_input: int | None = None

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> int:
        """Picodollars for these tokens, exact; ``cached_tokens`` are part of the prompt's."""
        cost = prompt_tokens * self.input + completion_tokens * self.output
        if cached_tokens and self.cached_input is not None:
            cost += min(cached_tokens, prompt_tokens) * (self.cached_input - self.input)
        return cost

    def worst_case(self, prompt_tokens: int, max_tokens: int) -> int:
        """The most a request may cost: every prompt token at the dearer input price, and
        ``max_tokens`` generated."""
        dearest = max(self.input, self.cached_input or 0)
        return prompt_tokens * dearest + max_tokens * self.output


FREE = Prices()


def price_per_token(value: object) -> int:
    """A price in dollars per million tokens, as configured (an integer, a float as its
    shortest decimal form ``repr`` gives, or a decimal string), in picodollars per token.

    ValueError saying what is wrong: not a number, negative, above the maximum or finer
    than ``PRICE_DECIMALS`` places."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("must be a number or a decimal string of dollars per million tokens")
    try:
        # repr, not Decimal(float): a TOML 0.15 is the float nearest 0.15, whose exact
        # binary value has 50-odd decimals; its repr is the "0.15" the file says.
        price = Decimal(repr(value) if isinstance(value, float) else str(value))
    except InvalidOperation:
        raise ValueError(f"must be a decimal number of dollars, not {value!r}") from None
    if not price.is_finite():
        raise ValueError(f"must be a finite number, not {value!r}")
    if not 0 <= price <= MAX_PRICE_PER_MTOK:
        raise ValueError(f"must be from 0 to {MAX_PRICE_PER_MTOK} dollars, not {value!r}")
    scaled = price * _SCALE
    if scaled != scaled.to_integral_value():
        raise ValueError(f"must have at most {PRICE_DECIMALS} decimal places, not {value!r}")
    return int(scaled)


def dollars(picodollars: int) -> str:
    """An exact decimal string of dollars, with at least two decimal places and no
    trailing zeros past them: ``1.50``, ``0.00``, ``0.00000135``."""
    whole, fraction = divmod(picodollars, PICODOLLARS_PER_DOLLAR)
    return f"{whole}.{f'{fraction:012d}'.rstrip('0').ljust(2, '0')}"
