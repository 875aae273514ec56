"""argparse types and the help formatter both command lines share.

Each type refuses a value with an ``ArgumentTypeError`` that says what was expected and what was
given, so argparse prints ``argument --port: a port is 0..65535, not 70000`` and exits 2.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Description and epilog as written; option help wrapped at spaces only, never inside a ``--flag``."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        # argparse's own version wraps with textwrap's default break_on_hyphens=True.
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def integer(text: str) -> int:
    """Any whole number."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def integer_in(low: int, high: int | None, what: str) -> Callable[[str], int]:
    """A type for a whole number in ``low..high`` (no upper bound when ``high`` is None); ``what`` says the range."""

    def parse(text: str) -> int:
        value = integer(text)
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{what}, not {value}")
        return value

    return parse


port = integer_in(0, 65535, "a port is 0..65535")
count = integer_in(0, None, "must be >= 0")
positive = integer_in(1, None, "must be >= 1")
http_error_status = integer_in(400, 599, "an HTTP error status is 400..599")


def rate(text: str) -> float:
    """A finite number of 0 or more (a rate, where 0 turns something off)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    # The comparison is False for NaN, so NaN is refused too.
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return value


def seconds(text: str) -> float:
    """A finite number of seconds above 0."""
    value = rate(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value
