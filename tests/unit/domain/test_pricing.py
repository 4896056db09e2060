"""Prices and costs: exact to the picodollar, from whatever form the models file used."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmserver.domain.pricing import (
    MAX_PRICE_PER_MTOK,
    PRICE_DECIMALS,
    Prices,
    dollars,
    price_per_token,
)

MAX_TOKENS = 2**31 - 1
"""The most tokens of one kind a log row holds."""


@pytest.mark.parametrize(
    ("configured", "picodollars_per_token"),
    [
        (0, 0),
        (3, 3_000_000),
        (0.15, 150_000),  # the float nearest 0.15, read as the 0.15 the file says
        (0.1, 100_000),
        (2.5, 2_500_000),
        ("0.0375", 37_500),
        ("1.5e-3", 1_500),
        ("0.000001", 1),
        (str(MAX_PRICE_PER_MTOK), MAX_PRICE_PER_MTOK * 10**6),
    ],
)
def test_prices_convert_exactly(configured: object, picodollars_per_token: int) -> None:
    assert price_per_token(configured) == picodollars_per_token


@pytest.mark.parametrize(
    ("configured", "reason"),
    [
        (-1, "from 0 to 1000"),
        ("-0.01", "from 0 to 1000"),
        (1000.5, "from 0 to 1000"),
        ("NaN", "finite"),
        ("Infinity", "finite"),
        ("0.0000001", "at most 6 decimal places"),
        (0.1 + 0.2, "at most 6 decimal places"),  # 0.30000000000000004 is what it says
        ("ten", "decimal number"),
        ("", "decimal number"),
        (True, "number or a decimal string"),
        ([1], "number or a decimal string"),
    ],
)
def test_a_bad_price_says_why(configured: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        price_per_token(configured)


@pytest.mark.parametrize(
    ("picodollars", "shown"),
    [
        (0, "0.00"),
        (10**12, "1.00"),
        (1_500_000_000_000, "1.50"),
        (1, "0.000000000001"),
        (1350, "0.00000000135"),
        (2**63 - 1, "9223372.036854775807"),
    ],
)
def test_dollars_are_exact_strings(picodollars: int, shown: str) -> None:
    assert dollars(picodollars) == shown


def test_the_worked_example_of_the_readme() -> None:
    # input_price_per_mtok = "0.15", output_price_per_mtok = 0.60; 1,200 in, 350 out
    prices = Prices(price_per_token("0.15"), price_per_token(0.60))
    assert dollars(prices.cost(1_200, 350)) == "0.00039"


_PRICES = st.decimals(min_value=0, max_value=MAX_PRICE_PER_MTOK, places=PRICE_DECIMALS)
_TOKENS = st.integers(min_value=0, max_value=MAX_TOKENS)


@given(_PRICES, _PRICES, _TOKENS, _TOKENS)
def test_a_cost_is_exactly_tokens_times_prices(
    input_price: Decimal, output_price: Decimal, prompt: int, completion: int
) -> None:
    cost = Prices(price_per_token(str(input_price)), price_per_token(str(output_price))).cost(
        prompt, completion
    )
    with localcontext() as exact:
        exact.prec = 60
        expected = (prompt * input_price + completion * output_price) / 10**6
        assert Decimal(dollars(cost)) == expected
    # What a row can hold: a signed 64-bit column.
    assert 0 <= cost < 2**63
