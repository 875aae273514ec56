"""Decimal strings written straight from integers: exact, and several times faster than ``Decimal``.

The simulator keeps prices as integer ticks and sizes as integer lots (``market``), so every
value it writes is ``units x 10**-places`` exactly; an amount ``p x v`` is ``ticks x lots`` at
``price_places + size_places``. Writing those with integer arithmetic and string slicing never
rounds and never passes through a binary float, and it is what lets one core render more than
100,000 pushes a second. The two spellings the vendor uses (protocol page, "Payloads"):

* :func:`units_plain`: no exponent and no trailing zeros (``"63039"``, ``"63039.01"``), the crypto
  trade style;
* :func:`units_fixed`: at least ``pad`` decimals, more if the value has more
  (``"63039.00000000"``), the crypto book and bar style and every business's native scale.
"""

from __future__ import annotations


def _units_text(units: int, places: int) -> str:
    """``units x 10**-places`` with exactly ``places`` decimals."""
    if places <= 0:
        return str(units)
    if units < 0:
        return "-" + _units_text(-units, places)
    digits = str(units)
    if len(digits) <= places:
        digits = digits.rjust(places + 1, "0")
    return f"{digits[:-places]}.{digits[-places:]}"


def units_plain(units: int, places: int) -> str:
    """``units x 10**-places`` without exponent or trailing zeros: ``units_plain(6303901, 2) == "63039.01"``."""
    if places <= 0:
        return str(units)
    return _units_text(units, places).rstrip("0").rstrip(".")


def units_fixed(units: int, places: int, pad: int) -> str:
    """``units x 10**-places`` with ``max(places, pad)`` decimals: ``units_fixed(63039, 0, 8) == "63039.00000000"``."""
    if pad <= places:
        return _units_text(units, places)
    if places <= 0:
        return f"{units}.{'0' * pad}"
    return _units_text(units, places) + "0" * (pad - places)
