"""Byte sizes as people write them in catalog files: ``64MiB``, ``512 KiB``, ``10MB``, ``100``.

Both unit families are accepted because both are in common use, and they differ by up
to 10% at ``TB``: ``KiB``/``MiB``/``GiB``/``TiB`` are powers of 1024, ``kB``/``MB``/``GB``/``TB``
are powers of 1000 (SI). Units are case-sensitive except for the ``k`` of ``kB``:
a lower-case ``b`` means *bits* (``Mb``), and a size in bits is more likely a mistake
than a wish, so it is refused rather than guessed at.

A decimal number is allowed (``1.5GiB``) when it comes to a whole number of bytes; the
arithmetic is exact (:class:`~decimal.Decimal`), so ``0.1 GB`` is 100000000, not
99999999. A bare integer, or an integer string, is a number of bytes.

This module is a leaf: it raises :class:`TypeError`/:class:`ValueError` and leaves it to
the caller to turn that into the error of its context (a catalog field, a setting).
"""

from __future__ import annotations

import re
from decimal import Decimal

__all__ = ["UNITS", "parse_byte_size"]

#: Unit suffix -> bytes. ``""`` (no unit) means bytes.
UNITS: dict[str, int] = {
    "": 1,
    "B": 1,
    "kB": 1000,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}

_SIZE = re.compile(r"\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[A-Za-z]*)\s*")


def parse_byte_size(value: object) -> int:
    """The number of bytes ``value`` names; :class:`ValueError` (or :class:`TypeError`
    for a value that is not an ``int`` or ``str``) says why it names none.

    ``value`` is an ``int`` (bytes) or a string such as ``"64MiB"`` or ``"100 B"``.
    Negative sizes, booleans, floats and fractional bytes are refused.
    """
    # bool is an int subclass; ``flush_bytes: yes`` in YAML is a typo, not 1 byte.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(
            f"a byte size must be an integer or a string like '64MiB'; "
            f"got {type(value).__name__} {value!r}"
        )
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a byte size cannot be negative; got {value}")
        return value
    match = _SIZE.fullmatch(value)
    if match is None or match["unit"] not in UNITS:
        units = ", ".join(u for u in UNITS if u)
        raise ValueError(
            f"cannot read {value!r} as a byte size; write a number followed by one of "
            f"{units} (or no unit for bytes), e.g. '64MiB'"
        )
    size = Decimal(match["number"]) * UNITS[match["unit"]]
    if size != size.to_integral_value():
        raise ValueError(f"{value!r} is not a whole number of bytes ({size})")
    return int(size)
