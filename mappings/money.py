"""Money, exact to the currency's minor unit. Amounts are Decimal, never float; stock is never here.

The lowest layer of the project: flows, mappings and reports all use these, and they import nothing of ours.
"""

from collections.abc import Sequence
from decimal import ROUND_DOWN, Decimal
from functools import cache

from babel.numbers import get_currency_precision, list_currencies


@cache
def known_currencies() -> frozenset[str]:
    """ISO 4217 codes known to CLDR (upper case)."""
    return frozenset(list_currencies())


def is_currency(code: str) -> bool:
    return code in known_currencies()


@cache
def minor_units(currency: str) -> int:
    """Digits after the decimal point for a currency: 2 for EUR, 0 for JPY, 3 for KWD.

    Raises ValueError for a code that is not ISO 4217.
    """
    if not is_currency(currency):
        raise ValueError(f"{currency!r} is not an ISO 4217 currency code.")
    return get_currency_precision(currency)


def minor_unit(currency: str) -> Decimal:
    """The smallest amount of a currency: Decimal('0.01') for EUR, Decimal('1') for JPY."""
    return Decimal(1).scaleb(-minor_units(currency))


def is_exact(amount: Decimal, currency: str) -> bool:
    """Whether an amount is a whole number of the currency's minor units."""
    return amount == amount.quantize(minor_unit(currency))


def split_exactly(total: Decimal, weights: Sequence[Decimal], currency: str) -> list[Decimal]:
    """Split ``total`` in proportion to ``weights`` so the parts add up to ``total`` exactly.

    Each part is rounded down to the minor unit, then the units left over go one each to the parts with the
    largest remainders (ties to the earliest), so no part is off by more than one minor unit from its exact share.
    Raises ValueError if ``total`` is not exact in the currency, or the weights are empty, negative or all zero.
    """
    unit = minor_unit(currency)
    if not is_exact(total, currency):
        raise ValueError(f"{total} is not a whole number of {currency} minor units.")
    if not weights or any(w < 0 for w in weights) or sum(weights) == 0:
        raise ValueError("Weights must be non-negative and not all zero.")
    weight_sum = sum(weights)
    exact = [total * w / weight_sum for w in weights]
    parts = [share.quantize(unit, rounding=ROUND_DOWN) for share in exact]
    leftover_units = int((total - sum(parts)) / unit)
    by_remainder = sorted(range(len(parts)), key=lambda i: (-(exact[i] - parts[i]), i))
    for index in by_remainder[:leftover_units]:
        parts[index] += unit
    return parts
