"""The price fields of a ``[[models]]`` entry, or of one of its ``[[models.deployments]]``.

```toml
input_price_per_mtok = "0.15"          # dollars per million tokens: a number or a decimal string
output_price_per_mtok = 0.60
cached_input_price_per_mtok = "0.075"  # prompt tokens the upstream read from its cache
```
A model's are 0 when left out (a local model costs nothing; cached input costs the input
price); a deployment's each default to its model's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from llmserver.domain.pricing import Prices, price_per_token

PRICE_FIELDS = {
    "input_price_per_mtok": "input",
    "output_price_per_mtok": "output",
    "cached_input_price_per_mtok": "cached_input",
}


def parse_prices(
    where: str, entry: dict[str, Any], fail: Callable[[str], Exception], base: Prices
) -> Prices:
    """``base`` with the price fields ``entry`` gives; ``fail`` names one that is wrong."""
    prices = base
    for option, name in PRICE_FIELDS.items():
        if option not in entry:
            continue
        try:
            per_token = price_per_token(entry[option])
        except ValueError as exc:
            raise fail(f"{where}: field '{option}' {exc}") from None
        prices = replace(prices, **{name: per_token})
    return prices
