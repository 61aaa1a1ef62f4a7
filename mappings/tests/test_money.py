from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mappings.money import is_exact, minor_unit, minor_units, split_exactly


def test_each_currency_has_its_own_minor_unit():
    assert (minor_units("EUR"), minor_units("JPY"), minor_units("KWD")) == (2, 0, 3)
    assert minor_unit("SEK") == Decimal("0.01")
    with pytest.raises(ValueError, match="not an ISO 4217"):
        minor_units("EURO")


def test_an_amount_finer_than_the_minor_unit_cannot_be_split():
    with pytest.raises(ValueError, match="minor units"):
        split_exactly(Decimal("10.005"), [Decimal(1)], "EUR")


def test_weights_must_not_be_all_zero_or_negative():
    with pytest.raises(ValueError):
        split_exactly(Decimal("10.00"), [Decimal(0), Decimal(0)], "EUR")
    with pytest.raises(ValueError):
        split_exactly(Decimal("10.00"), [Decimal(2), Decimal(-1)], "EUR")


@given(
    currency=st.sampled_from(["EUR", "JPY", "KWD", "SEK"]),
    minor_amount=st.integers(min_value=0, max_value=10**9),
    weights=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=12).filter(any),
)
def test_parts_add_up_exactly_and_none_is_off_by_more_than_one_minor_unit(currency, minor_amount, weights):
    unit = minor_unit(currency)
    total = minor_amount * unit
    weights = [Decimal(w) for w in weights]
    parts = split_exactly(total, weights, currency)
    assert sum(parts) == total
    assert all(is_exact(part, currency) and part >= 0 for part in parts)
    for part, weight in zip(parts, weights, strict=True):
        assert abs(part - total * weight / sum(weights)) < unit
