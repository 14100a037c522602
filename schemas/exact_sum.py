"""Exact, mergeable sums of numeric columns: what lets two systems agree on a total.

Rounded float addition depends on the order rows are added in, so two systems summing
the same prices would disagree in the last bit. :class:`ExactSum` keeps every sum
exactly -- ints as Python ints (no int64 overflow), decimals as unscaled ints, floats as
an exact multiple of 2**-1074 (every finite double is one) plus counts of inf/NaN -- so
``+`` merges batches in any order and ``-`` removes a replaced row's value exactly (the
dedup table replacing a key's winner). :meth:`ExactSum.value` rounds once, at the end.
Columns are summed by pyarrow kernels, never value by value in Python.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from onepipe.schemas.errors import SchemaError

__all__ = ["ExactSum", "SumKind", "sum_array", "zero_sum"]

#: A float64 is an integer multiple of 2**-1074 (the smallest subnormal).
_FLOAT_UNIT_EXP = 1074

SumKind = Literal["int", "decimal", "float"]

@dataclass(frozen=True, slots=True)
class ExactSum:
    """The exact sum of one numeric field; ``+`` merges, ``-`` removes, exactly."""

    #: ``int``, ``decimal`` or ``float``: how :attr:`units` is read.
    kind: SumKind
    #: int: the sum; decimal: the unscaled sum (value ``units * 10**-scale``);
    #: float: the sum of the finite values as ``units * 2**-1074``.
    units: int = 0
    #: Decimal scale (0 for other kinds).
    scale: int = 0
    #: Number of +inf values summed (floats only: an infinity has no exact sum).
    pos_inf: int = 0
    #: Number of -inf values summed (floats only).
    neg_inf: int = 0
    #: Number of NaN values summed (floats only).
    nan: int = 0

    def _combine(self, other: ExactSum, sign: int) -> ExactSum:
        if (self.kind, self.scale) != (other.kind, other.scale):
            raise SchemaError(f"cannot combine a {self.kind} sum (scale {self.scale}) with a "
                              f"{other.kind} sum (scale {other.scale}): different field types")
        return ExactSum(self.kind, self.units + sign * other.units, self.scale,
                        self.pos_inf + sign * other.pos_inf,
                        self.neg_inf + sign * other.neg_inf, self.nan + sign * other.nan)

    def __add__(self, other: ExactSum) -> ExactSum:
        return self._combine(other, 1)

    def __sub__(self, other: ExactSum) -> ExactSum:
        return self._combine(other, -1)

    def exact(self) -> int | Decimal | Fraction | float:
        """The exact value (a float only for inf/NaN sums)."""
        if self.kind == "int":
            return self.units
        if self.kind == "decimal":
            digits = tuple(int(d) for d in str(abs(self.units)))
            return Decimal((int(self.units < 0), digits, -self.scale))
        if self.nan or (self.pos_inf and self.neg_inf):
            return math.nan
        if self.pos_inf or self.neg_inf:
            return math.inf if self.pos_inf else -math.inf
        return Fraction(self.units, 2**_FLOAT_UNIT_EXP)

    def value(self) -> int | Decimal | float:
        """The sum as its field's type; a float sum is rounded once (correctly)."""
        exact = self.exact()
        if not isinstance(exact, Fraction):
            return exact
        try:
            return float(exact)
        except OverflowError:
            return math.inf if exact > 0 else -math.inf

    def to_json(self) -> dict[str, Any]:
        """JSON data; ``value`` is for people and ignored by :meth:`from_json`.

        Integers are text: they can have hundreds of digits, past what JSON readers keep
        exact. A float sum is written as ``units * 2**exp2`` with ``units`` odd (or 0), so
        ``0.1 + 0.2`` stays short instead of a 300-digit multiple of 2**-1074.
        """
        units, exp2 = self.units, 0
        if self.kind == "float":
            exp2 = -_FLOAT_UNIT_EXP
            if units:
                trailing = (units & -units).bit_length() - 1
                units, exp2 = units >> trailing, exp2 + trailing
        data: dict[str, Any] = {"kind": self.kind, "units": str(units), "scale": self.scale}
        if self.kind == "float":
            data.update(exp2=exp2, pos_inf=self.pos_inf, neg_inf=self.neg_inf, nan=self.nan)
        data["value"] = str(self.value())
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExactSum:
        kind = data.get("kind")
        if kind not in ("int", "decimal", "float"):
            raise SchemaError(f"a sum's kind must be int, decimal or float; got {kind!r}")
        units = int(data["units"])
        if kind != "float":
            return cls(kind, units, int(data["scale"]))
        shift = int(data["exp2"]) + _FLOAT_UNIT_EXP
        if shift < 0:
            raise SchemaError(f"float sum units * 2**{data['exp2']} is not a multiple of "
                              "2**-1074, so no sum of doubles gives it")
        return cls(kind, units << shift, 0, int(data["pos_inf"]), int(data["neg_inf"]),
                   int(data["nan"]))


def zero_sum(t: pa.DataType) -> ExactSum:
    """The empty sum of a column of canonical type ``t``."""
    if pa.types.is_decimal(t):
        return ExactSum("decimal", scale=t.scale)
    return ExactSum("float" if pa.types.is_floating(t) else "int")


def _int_sum(values: pa.Array) -> int:
    # Exact without overflow: split each int64 into a signed high and an unsigned low
    # 32-bit half; each half's sum fits int64 for fewer than 2**31 rows (a slice has 64k).
    high = pc.sum(pc.shift_right(values, 32)).as_py() or 0
    low = pc.sum(pc.bit_wise_and(values, 0xFFFFFFFF)).as_py() or 0
    return (high << 32) + low


def _words(array: pa.Array, width: int, signed: bool) -> pa.Array:
    """The 4-byte words of fixed-width values, as a (len(array) * width/4)-long array."""
    kind = pa.int32() if signed else pa.uint32()
    words = width // 4
    return pa.Array.from_buffers(kind, len(array) * words, [None, array.buffers()[1]],
                                 offset=array.offset * words)


def _decimal_sum(values: pa.Array) -> int:
    width = values.type.byte_width
    count = width // 4
    total = 0
    for i in range(count):  # word i of each value: unsigned, the top one signed
        words = pa.FixedSizeListArray.from_arrays(_words(values, width, i == count - 1), count)
        total += _int_sum(pc.list_element(words, i).cast(pa.int64())) << (32 * i)
    return total


def _float_sum(values: pa.Array) -> ExactSum:
    bits = pa.Array.from_buffers(pa.int64(), len(values), [None, values.buffers()[1]],
                                 offset=values.offset)
    exponent = pc.bit_wise_and(pc.shift_right(bits, 52), 0x7FF)
    fraction = pc.bit_wise_and(bits, 2**52 - 1)
    negative = pc.less(bits, 0)
    special = pc.equal(exponent, 0x7FF)
    nan = pc.sum(pc.and_(special, pc.not_equal(fraction, 0))).as_py() or 0
    infinite = pc.and_(special, pc.equal(fraction, 0))
    pos_inf = pc.sum(pc.and_(infinite, pc.invert(negative))).as_py() or 0
    neg_inf = pc.sum(pc.and_(infinite, negative)).as_py() or 0
    finite = pc.invert(special)
    # value = mantissa * 2**(max(exponent, 1) - 1075): the implicit 1 only when normal.
    mantissa = pc.if_else(pc.equal(exponent, 0), fraction, pc.bit_wise_or(fraction, 2**52))
    signed = pc.if_else(negative, pc.negate(mantissa), mantissa)
    # Split like _int_sum so each (exponent, half) group sums exactly in int64.
    table = pa.table({"e": pc.max_element_wise(exponent, 1),
                      "hi": pc.shift_right(signed, 32),
                      "lo": pc.bit_wise_and(signed, 0xFFFFFFFF)}).filter(finite)
    grouped = table.group_by("e").aggregate([("hi", "sum"), ("lo", "sum")])
    units = 0
    for e, hi, lo in zip(grouped.column("e").to_pylist(), grouped.column("hi_sum").to_pylist(),
                         grouped.column("lo_sum").to_pylist(), strict=True):
        units += ((hi << 32) + lo) << (e - 1)
    return ExactSum("float", units, 0, pos_inf, neg_inf, nan)


def sum_array(values: pa.Array, t: pa.DataType) -> ExactSum:
    """The exact sum of one numeric column of canonical type ``t``; nulls add nothing."""
    values = values.drop_null()
    if pa.types.is_decimal(t):
        return ExactSum("decimal", _decimal_sum(values), t.scale)
    if pa.types.is_floating(t):
        return _float_sum(values)
    return ExactSum("int", _int_sum(values.cast(pa.int64())))

