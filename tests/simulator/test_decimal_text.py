"""Decimal strings from integers, pure: checked against ``Decimal`` formatting of the same values."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.simulator.decimal_text import units_fixed, units_plain
from bridge.simulator.market import fixed, plain

UNITS = st.integers(min_value=-(10**15), max_value=10**15) | st.sampled_from([0, 1, 10, 100, 10**8])
PLACES = st.integers(min_value=0, max_value=12)


@given(UNITS, PLACES)
def test_plain_is_the_trimmed_decimal(units: int, places: int) -> None:
    """``units_plain`` writes what trimming the exact ``Decimal`` writes: no exponent, no trailing zeros."""
    assert units_plain(units, places) == plain(Decimal(units).scaleb(-places))


@given(UNITS, PLACES, PLACES)
def test_fixed_is_the_padded_decimal(units: int, places: int, pad: int) -> None:
    """``units_fixed`` pads to ``pad`` decimals like ``fixed`` and never drops one of the value's own."""
    assert units_fixed(units, places, pad) == fixed(Decimal(units).scaleb(-places), pad)


@pytest.mark.parametrize(
    ("units", "places", "pad", "plain_text", "fixed_text"),
    [
        (6303901, 2, 8, "63039.01", "63039.01000000"),
        (63039, 0, 8, "63039", "63039.00000000"),
        (7930, 5, 0, "0.0793", "0.07930"),
        (-900, 2, 5, "-9", "-9.00000"),
        (0, 3, 0, "0", "0.000"),
    ],
)
def test_literal_spellings(units: int, places: int, pad: int, plain_text: str, fixed_text: str) -> None:
    """The spellings of the production captures, written out."""
    assert units_plain(units, places) == plain_text
    assert units_fixed(units, places, pad) == fixed_text
