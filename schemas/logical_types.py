"""Converters for Avro's leaf types: the primitives and the logical types built on them.

The leaf half of :mod:`onepipe.schemas.validation` (whose compiler,
:mod:`onepipe.schemas.validation_compile`, builds records, arrays, maps and unions around
these). Converters follow the contract of :mod:`onepipe.schemas.refusals`: the datum
fastavro writes, or :data:`~onepipe.schemas.refusals.BAD` with a reason when asked for one.

Logical types take their text forms as well as their numbers: ISO-8601 timestamps (with a
timezone; local timestamps without one), ``YYYY-MM-DD`` dates, ``HH:MM:SS[.ffffff]`` times,
numeric text for decimals, hyphenated UUIDs. Every range is what fastavro's *readers* can
decode, not just what the wire holds: a ``timestamp-millis`` of ``2**62`` is a valid long
that no consumer can turn back into a datetime, so accepting it would poison the topic.
Parsers raise ``ValueError`` carrying the reason alone; that only happens for bad input.
"""

from __future__ import annotations

import functools
import math
import re
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, DecimalException
from typing import Any, NamedTuple

from onepipe.schemas.refusals import Conv, Errs, refuse


class Leaf(NamedTuple):
    """A converter and what unions and messages need to know about its type."""

    conv: Conv
    #: What the type expects, for messages: ``int (32-bit)``.
    label: str
    #: Short type name for a union's list of branches: ``int``, ``timestamp-millis``.
    brief: str
    #: fastavro's name for the type in union tuple notation; also its wrapped-union key.
    tag: str
    #: JSON input types the converter can take.
    accepts: frozenset[type]
    #: Family of the datum's Python type as fastavro's union guessing sees it.
    kind: str
    #: Converter for a schema default when it differs from ``conv``.
    default: Conv | None = None


# --- primitives -------------------------------------------------------------------------


def utf8(text: str) -> bool:
    """Whether fastavro can write ``text`` (False for a lone surrogate)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _null(v: Any, errs: Errs | None) -> Any:
    return None if v is None else refuse(errs, "null", v)


def _boolean(v: Any, errs: Errs | None) -> Any:
    return v if v is True or v is False else refuse(errs, "boolean", v)


def _string(v: Any, errs: Errs | None) -> Any:
    if type(v) is str:
        if v.isascii() or utf8(v):
            return v
        return refuse(errs, "string", v, "has a lone surrogate, which UTF-8 cannot encode")
    return refuse(errs, "string", v)


def _integer(lo: int, hi: int, label: str, parse: Callable[[str], int] | None = None) -> Conv:
    def conv(v: Any, errs: Errs | None) -> Any:
        if type(v) is int:  # not bool: type() is exact
            if lo <= v <= hi:
                return v
            return refuse(errs, label, v, "out of range", bare=True)
        if type(v) is str and parse is not None:
            try:
                return parse(v)
            except ValueError as exc:
                return refuse(errs, label, v, str(exc))
        return refuse(errs, label, v)

    return conv


def _real(limit: float, label: str) -> Conv:
    def conv(v: Any, errs: Errs | None) -> Any:
        if type(v) is float:
            if -limit <= v <= limit:  # false for NaN and the infinities too
                return v
        elif type(v) is int:
            if -limit <= v <= limit:  # exact: Python compares int and float without rounding
                return float(v)
        else:
            return refuse(errs, label, v)
        finite = type(v) is int or v - v == 0
        why = "out of range" if finite else "not finite; JSON has no NaN or Infinity"
        return refuse(errs, label, v, why, bare=True)

    return conv


def binary(label: str, size: int) -> Conv:
    """bytes (``size`` -1) or fixed: text of code points up to U+00FF, per Avro's JSON encoding."""

    def conv(v: Any, errs: Errs | None) -> Any:
        if type(v) is not str:
            return refuse(errs, label, v)
        try:
            data = v.encode("latin-1")
        except UnicodeEncodeError:
            return refuse(errs, label, v, "has characters above U+00FF")
        if size < 0 or len(data) == size:
            return data
        return refuse(errs, label, v, f"{len(data)} bytes")

    return conv


def _parsed(label: str, parse: Callable[[Any], Any], accepts: tuple[type, ...]) -> Conv:
    def conv(v: Any, errs: Errs | None) -> Any:
        if type(v) in accepts:
            try:
                return parse(v)
            except ValueError as exc:
                return refuse(errs, label, v, str(exc))
        return refuse(errs, label, v)

    return conv


def _leaf(conv: Conv, label: str, brief: str, accepts: tuple[type, ...], kind: str) -> Leaf:
    return Leaf(conv, label, brief, brief, frozenset(accepts), kind)


_INT, _LONG, _FLOAT = "int (32-bit)", "long (64-bit)", "float (32-bit)"
_BYTES = "bytes (text of code points U+0000 to U+00FF)"
PRIMITIVES: dict[str, Leaf] = {
    "null": _leaf(_null, "null", "null", (type(None),), "null"),
    "boolean": _leaf(_boolean, "boolean", "boolean", (bool,), "bool"),
    "int": _leaf(_integer(-(2**31), 2**31 - 1, _INT), _INT, "int", (int,), "number"),
    "long": _leaf(_integer(-(2**63), 2**63 - 1, _LONG), _LONG, "long", (int,), "number"),
    "float": _leaf(_real(3.4028234663852886e38, _FLOAT), _FLOAT, "float", (int, float), "number"),
    "double": _leaf(
        _real(sys.float_info.max, "double"), "double", "double", (int, float), "number"
    ),
    "string": _leaf(_string, "string", "string", (str,), "text"),
    "bytes": _leaf(binary(_BYTES, -1), _BYTES, "bytes", (str,), "binary"),
}


# --- logical types ----------------------------------------------------------------------

_US = timedelta(microseconds=1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = _EPOCH_UTC.replace(tzinfo=None)  # local timestamps are wall-clock readings
_EPOCH_DAY = date(1970, 1, 1).toordinal()
# The readers build datetimes and dates: years 1 to 9999.
MIN_MICROS = (datetime.min.replace(tzinfo=UTC) - _EPOCH_UTC) // _US
MAX_MICROS = (datetime.max.replace(tzinfo=UTC) - _EPOCH_UTC) // _US
MIN_MILLIS, MAX_MILLIS = -(-MIN_MICROS // 1000), MAX_MICROS // 1000
MIN_DAYS, MAX_DAYS = date.min.toordinal() - _EPOCH_DAY, date.max.toordinal() - _EPOCH_DAY
#: logicalType on long -> (micros, local)
_TIMESTAMPS = {
    "timestamp-millis": (False, False),
    "timestamp-micros": (True, False),
    "local-timestamp-millis": (False, True),
    "local-timestamp-micros": (True, True),
}
# re.ASCII: without it \d also matches Arabic-Indic and other Unicode digits.
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_TIME = re.compile(r"([01]\d|2[0-3]):([0-5]\d):([0-5]\d)(?:\.(\d{1,6}))?", re.ASCII)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
# datetime.fromisoformat drops fractional digits past the sixth without a word.
_SUB_MICRO = re.compile(r"[.,]\d{7}", re.ASCII)


def logical(s: dict[str, Any], base: str) -> Leaf | None:
    """The leaf for ``s``'s logicalType on ``base``; None for none, unknown or invalid ones.

    The spec says to ignore a logical type that does not fit: the base type then applies.
    """
    name = s.get("logicalType")
    if base == "long" and name in _TIMESTAMPS:
        micros, local = _TIMESTAMPS[name]
        zone = "without" if local else "with"
        label = f"{name} (epoch {name[-6:]}, or ISO-8601 text {zone} a timezone)"
        lo, hi = (MIN_MICROS, MAX_MICROS) if micros else (MIN_MILLIS, MAX_MILLIS)
        parse: Callable[[str], int] = functools.partial(
            timestamp_from_text, micros=micros, local=local
        )
    elif base == "int" and name == "date":
        label = "date (days since 1970-01-01, or YYYY-MM-DD)"
        lo, hi, parse = MIN_DAYS, MAX_DAYS, date_from_text
    elif (base, name) in (("int", "time-millis"), ("long", "time-micros")):
        micros = name == "time-micros"
        label = f"{name} (a count after midnight, or HH:MM:SS[.ffffff])"
        lo, hi = 0, 86_400 * (1_000_000 if micros else 1000) - 1
        parse = functools.partial(time_from_text, micros=micros)
    elif base == "string" and name == "uuid":
        label = "uuid (text such as 123e4567-e89b-12d3-a456-426614174000)"
        return Leaf(
            _parsed(label, uuid_from_text, (str,)),
            label,
            "uuid",
            "string",
            frozenset((str,)),
            "text",
        )
    elif base in ("bytes", "fixed") and name == "decimal":
        return _decimal(s, base)
    else:
        return None
    conv = _integer(lo, hi, label, parse)
    return Leaf(conv, label, str(name), base, frozenset((int, str)), "number")


def _decimal(s: dict[str, Any], base: str) -> Leaf | None:
    precision, scale = s.get("precision"), s.get("scale", 0)
    if type(precision) is not int or type(scale) is not int or not 0 <= scale <= precision:
        return None
    size = s["size"] if base == "fixed" else 0
    # The most digits a two's-complement integer of `size` bytes always holds.
    if precision < 1 or size and precision > int((8 * size - 1) * math.log10(2)):
        return None
    label = f"decimal({precision}, {scale}) (a JSON number or numeric text)"
    parse = functools.partial(decimal_from_json, precision=precision, scale=scale, size=size)
    accepts = (int, float, str)
    conv = _parsed(label, parse, accepts)
    tag = s["name"] if size else "bytes"
    # A default is in the JSON form of the base type (Avro spec): raw two's-complement bytes.
    default = binary(label, size or -1)
    return Leaf(conv, label, "decimal", tag, frozenset(accepts), "binary", default)


def timestamp_from_text(text: str, *, micros: bool, local: bool) -> int:
    """ISO-8601 text to epoch millis or micros; instants need an offset, local ones none."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        msg = "not an ISO-8601 timestamp such as 2024-05-01T12:00:00Z"
        raise ValueError(msg) from None
    if _SUB_MICRO.search(text):
        msg = "has digits below a microsecond"
        raise ValueError(msg)
    if local and moment.tzinfo is not None:
        msg = "a local timestamp has no timezone offset; drop it"
        raise ValueError(msg)
    if not local and moment.tzinfo is None:
        msg = "no timezone offset; add Z or +HH:MM"
        raise ValueError(msg)
    count = (moment - (_EPOCH_NAIVE if local else _EPOCH_UTC)) // _US
    if not MIN_MICROS <= count <= MAX_MICROS:
        msg = "outside years 1 to 9999 in UTC"
        raise ValueError(msg)
    return count if micros else _millis(count)


def _millis(micros: int) -> int:
    if micros % 1000:
        msg = "has digits below a millisecond"
        raise ValueError(msg)
    return micros // 1000


def date_from_text(text: str) -> int:
    """``YYYY-MM-DD`` to days since 1970-01-01."""
    if not _DATE.fullmatch(text):
        msg = "not a YYYY-MM-DD date"
        raise ValueError(msg)
    try:
        return date.fromisoformat(text).toordinal() - _EPOCH_DAY
    except ValueError:
        msg = "not a calendar date"
        raise ValueError(msg) from None


def time_from_text(text: str, *, micros: bool) -> int:
    """``HH:MM:SS[.ffffff]`` to millis or micros after midnight."""
    match = _TIME.fullmatch(text)
    if match is None:
        msg = "not an HH:MM:SS[.ffffff] time of day"
        raise ValueError(msg)
    hour, minute, second, fraction = match.groups()
    count = ((int(hour) * 60 + int(minute)) * 60 + int(second)) * 1_000_000
    count += int((fraction or "").ljust(6, "0"))
    return count if micros else _millis(count)


def uuid_from_text(text: str) -> str:
    """A hyphenated UUID in any case, lowercased."""
    if not _UUID.fullmatch(text):
        msg = "not a UUID such as 123e4567-e89b-12d3-a456-426614174000"
        raise ValueError(msg)
    return text.lower()


def decimal_from_json(value: int | float | str, precision: int, scale: int, size: int) -> Decimal:
    """A JSON number or numeric text to a Decimal with exactly ``scale`` fractional digits.

    ``size`` is the byte size of a ``fixed`` (0 for ``bytes``): the unscaled value must fit
    it as a two's-complement integer, or fastavro would write the wrong number of bytes.
    """
    too_many = f"needs more than the {precision} digits of the precision"
    if isinstance(value, float):
        if not math.isfinite(value):
            msg = "not a finite number"
            raise ValueError(msg)
        text = repr(value)  # the shortest text that reads back as this float: 0.1, not 0.1000…55
    elif isinstance(value, int):
        if value.bit_length() > 4 * precision:  # > 16**precision > 10**precision
            raise ValueError(too_many)
        text = str(value)
    elif _NUMBER.fullmatch(value):
        text = value
    else:
        msg = "not a decimal number such as 12.50"
        raise ValueError(msg)
    try:
        sign, digits, exponent = Decimal(text).as_tuple()
    except DecimalException:
        msg = "not a decimal number such as 12.50"
        raise ValueError(msg) from None
    assert isinstance(exponent, int)  # finite: the checks above let no NaN or Infinity in
    # Exact integer arithmetic on the digits: a Decimal context would round or clamp.
    coefficient = "".join(map(str, digits)).lstrip("0")
    significant = coefficient.rstrip("0")
    if not significant:
        return Decimal((0, (0,), -scale))
    exponent += len(coefficient) - len(significant)
    if -exponent > scale:
        msg = f"needs {-exponent} digits after the point, scale is {scale}"
        raise ValueError(msg)
    if len(significant) + exponent + scale > precision:
        raise ValueError(too_many)
    unscaled = significant + "0" * (exponent + scale)
    if size and int(unscaled).bit_length() + 1 > size * 8:
        msg = f"does not fit the {size} bytes of the fixed type"
        raise ValueError(msg)
    return Decimal((sign, tuple(map(int, unscaled)), -scale))
